rm -f words/*.count filelist report.txt
