# words/NAME.count: the number of words in words/NAME.txt
redo-ifchange "$2.txt"
wc -w <"$2.txt" | tr -d ' '
