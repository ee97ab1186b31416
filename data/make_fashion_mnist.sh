#!/bin/sh
# Links Fashion-MNIST's four IDX files (Debian's dataset-fashion-mnist package, which installs
# them gzip-compressed under /usr/share/datasets/fashion-mnist) into a folder that ./train reads.
# Usage: data/make_fashion_mnist.sh OUT_FOLDER
set -eu

out=${1:-data/fashion-mnist}
source=/usr/share/datasets/fashion-mnist
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"

missing=0
for f in $files; do [ -f "$source/$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make_fashion_mnist: installing Debian's dataset-fashion-mnist package" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >&2
  else
    echo "make_fashion_mnist: $source is missing; install it with: sudo apt-get install dataset-fashion-mnist" >&2
    exit 1
  fi
fi
for f in $files; do
  if [ ! -f "$source/$f" ]; then
    echo "make_fashion_mnist: dataset-fashion-mnist is installed but $source/$f is missing" >&2
    exit 1
  fi
done

mkdir -p "$out"
for f in $files; do ln -sf "$source/$f" "$out/$f"; done
echo "make_fashion_mnist: linked $files from $source into $out"
