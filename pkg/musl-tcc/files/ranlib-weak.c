/* ranlib-weak ARCHIVE: rewrite the symbol index of an ar archive of ELF64
 * objects so that it lists every defined global *and weak* symbol.
 *
 * Why: `tcc -ar` indexes global symbols only, and tcc's linker takes a
 * member out of an archive only for a symbol the index names. musl defines
 * hundreds of functions (malloc, __init_tls, ___errno_location…) as weak
 * aliases, so a libc.a indexed by tcc -ar links nothing that needs them.
 * GNU ranlib indexes weak symbols; this does the same, deterministically:
 * the members are kept byte for byte, in order, their headers too but for
 * the date, which tcc leaves blank and is written as 0 (as GNU ar -D does);
 * the index lists names in member order, as GNU ar does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *buf;
static long len;

static void die(const char *msg)
{
	fprintf(stderr, "ranlib-weak: %s\n", msg);
	exit(1);
}

static unsigned long le(const unsigned char *p, int n)
{
	unsigned long v = 0;
	while (n--) v = v << 8 | p[n];
	return v;
}

static void be32(unsigned char *p, unsigned long v)
{
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

struct member { long hdr, size; };

int main(int argc, char **argv)
{
	FILE *f;
	struct member *m = 0;
	int nm = 0, i;
	char **names = 0;
	long *owner = 0, nnames = 0, namebytes = 0, pos, idxsize, shift;
	char tmp[4096];

	if (argc != 2) die("usage: ranlib-weak ARCHIVE");
	if (!(f = fopen(argv[1], "rb"))) die("cannot open the archive");
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(len + 1);
	if (!buf || fread(buf, 1, len, f) != (size_t)len) die("cannot read the archive");
	fclose(f);
	if (len < 8 || memcmp(buf, "!<arch>\n", 8)) die("not an ar archive");

	for (pos = 8; pos + 60 <= len; ) {
		long size = strtol((char *)buf + pos + 48, 0, 10);
		if (pos + 60 + size > len) die("truncated member");
		if (memcmp(buf + pos, "/ ", 2)) { /* not the old index */
			m = realloc(m, (nm + 1) * sizeof *m);
			m[nm].hdr = pos;
			m[nm].size = size;
			nm++;
		}
		pos += 60 + size + (size & 1);
	}

	for (i = 0; i < nm; i++) {
		unsigned char *e = buf + m[i].hdr + 60;
		unsigned long shoff, shentsize, shnum, s;
		if (m[i].size < 64 || memcmp(e, "\177ELF\2", 5)) continue;
		shoff = le(e + 40, 8);
		shentsize = le(e + 58, 2);
		shnum = le(e + 60, 2);
		for (s = 0; s < shnum; s++) {
			unsigned char *sh = e + shoff + s * shentsize;
			unsigned char *str, *sym;
			unsigned long off, size, k;
			if (le(sh + 4, 4) != 2) continue; /* SHT_SYMTAB */
			off = le(sh + 24, 8);
			size = le(sh + 32, 8);
			str = e + le(e + shoff + le(sh + 40, 4) * shentsize + 24, 8);
			for (k = 24; k + 24 <= size; k += 24) {
				sym = e + off + k;
				int bind = sym[4] >> 4;
				if ((bind != 1 && bind != 2) || le(sym + 6, 2) == 0) continue;
				names = realloc(names, (nnames + 1) * sizeof *names);
				owner = realloc(owner, (nnames + 1) * sizeof *owner);
				names[nnames] = (char *)str + le(sym, 4);
				owner[nnames] = i;
				namebytes += strlen(names[nnames]) + 1;
				nnames++;
			}
		}
	}

	idxsize = 4 + 4 * nnames + namebytes;
	idxsize += idxsize & 1;
	shift = 8 + 60 + idxsize;

	snprintf(tmp, sizeof tmp, "%s.ranlib-weak", argv[1]);
	if (!(f = fopen(tmp, "wb"))) die("cannot write the archive");
	{
		char hdr[61];
		unsigned char n[4];
		long base = m && nm ? m[0].hdr : len, k;
		snprintf(hdr, sizeof hdr, "%-16s%-12s%-6s%-6s%-8s%-10ld`\n", "/", "0", "0", "0", "0", idxsize);
		fwrite("!<arch>\n", 1, 8, f);
		fwrite(hdr, 1, 60, f);
		be32(n, nnames);
		fwrite(n, 1, 4, f);
		for (k = 0; k < nnames; k++) {
			be32(n, m[owner[k]].hdr - base + shift);
			fwrite(n, 1, 4, f);
		}
		for (k = 0; k < nnames; k++) fwrite(names[k], 1, strlen(names[k]) + 1, f);
		if ((4 + 4 * nnames + namebytes) & 1) fputc('\n', f);
		/* tcc -ar leaves the date blank, which other ars refuse: 0 */
		for (k = 0; k < nm; k++) memcpy(buf + m[k].hdr + 16, "0           ", 12);
		fwrite(buf + base, 1, len - base, f);
	}
	if (fclose(f)) die("cannot write the archive");
	if (rename(tmp, argv[1])) die("cannot replace the archive");
	return 0;
}
