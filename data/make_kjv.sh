#!/bin/sh
# Writes the King James Bible (Debian's bible-kjv package) as one UTF-8 text file, the default
# corpus of ./train.  Usage: data/make_kjv.sh OUT.txt
#
# `bible` prints any verse range; Gen1:1-Rev22:21 is the whole text. Its pretty-printed form
# (book and chapter headings, numbered verses) is kept because it reads like a book, which is what
# a language model should learn. COLUMNS is pinned because pretty-printing wraps lines at
# COLUMNS-1, and the corpus must be the same on every machine.
set -eu

out=${1:-data/corpus/kjv.txt}

if ! command -v bible >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make_kjv: installing Debian's bible-kjv package" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bible-kjv >&2
  else
    echo "make_kjv: the 'bible' program is missing; install it with: sudo apt-get install bible-kjv" >&2
    exit 1
  fi
fi

mkdir -p "$(dirname "$out")"
# Written next to the target and renamed at the end, so an interrupted run never leaves a
# partial corpus behind that a later `make data` would take as done.
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT INT TERM

# bible starts an interactive session when it reads a terminal; </dev/null keeps it batch.
COLUMNS=80 bible Gen1:1-Rev22:21 </dev/null >"$tmp"

# The whole text is about 4.3 MB and ends with Revelation 22:21; anything less is a broken
# install or a changed bible program, and training on it silently would be worse than failing.
bytes=$(wc -c <"$tmp")
if [ "$bytes" -lt 4000000 ]; then
  echo "make_kjv: bible printed only $bytes bytes (expected about 4.3 MB); is bible-kjv's data intact?" >&2
  exit 1
fi
if ! tail -n 3 "$tmp" | grep -q "The grace of our Lord Jesus Christ be with you all. Amen."; then
  echo "make_kjv: the output does not end with Revelation 22:21; is bible-kjv's data intact?" >&2
  exit 1
fi

mv -f "$tmp" "$out"
trap - EXIT INT TERM
echo "make_kjv: wrote $out ($bytes bytes)"
