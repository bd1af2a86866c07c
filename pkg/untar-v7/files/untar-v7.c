/*
 * untar-v7: extracts, from stdin, a tar archive whose headers are in the
 * old v7 format. xz's release tarballs are made so (automake's tar-v7),
 * and the seed's busybox tar takes only ustar headers. Regular files,
 * directories, symlinks and hardlinks, with their modification times (so
 * that make does not take the generated files for out of date); names that
 * lead out are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

static void field(char *to, const unsigned char *from, size_t n)
{
	memcpy(to, from, n);
	to[n] = 0;
}

static int unsafe(const char *p)
{
	return p[0] == '/' || !strcmp(p, "..") || !strncmp(p, "../", 3) || strstr(p, "/../") ||
	       (strlen(p) >= 3 && !strcmp(p + strlen(p) - 3, "/.."));
}

static void parents(char *p)
{
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
}

int main(void)
{
	unsigned char h[512], block[512];
	char name[101], target[101];
	while (fread(h, 1, 512, stdin) == 512) {
		if (!h[0])
			return 0;
		field(name, h, 100);
		field(target, h + 157, 100);
		long mode = strtol((char *)h + 100, 0, 8);
		long size = strtol((char *)h + 124, 0, 8);
		struct utimbuf times = {strtol((char *)h + 136, 0, 8), strtol((char *)h + 136, 0, 8)};
		char type = h[156];
		size_t n = strlen(name);
		if (unsafe(name)) {
			fprintf(stderr, "untar-v7: %s: refused: leads out of the directory\n", name);
			return 1;
		}
		parents(name);
		if (type == '5' || name[n - 1] == '/') {
			mkdir(name, 0755);
		} else if (type == '2') {
			unlink(name);
			if (symlink(target, name)) {
				perror(name);
				return 1;
			}
		} else if (type == '1') {
			if (unsafe(target) || (unlink(name), link(target, name))) {
				perror(name);
				return 1;
			}
		} else if (type == '0' || type == 0) {
			FILE *f = fopen(name, "wb");
			if (!f) {
				perror(name);
				return 1;
			}
			for (long left = size; left > 0; left -= 512) {
				if (fread(block, 1, 512, stdin) != 512) {
					fprintf(stderr, "untar-v7: %s: archive ends early\n", name);
					return 1;
				}
				fwrite(block, 1, left < 512 ? left : 512, f);
			}
			if (fclose(f) || chmod(name, mode & 0777) || utime(name, &times)) {
				perror(name);
				return 1;
			}
			continue;
		} else {
			fprintf(stderr, "untar-v7: %s: entry type '%c' is not supported\n", name, type);
			return 1;
		}
		/* no data follows the other types */
	}
	return 0;
}
