#!/usr/bin/env bash
# usage: bad_input_fixtures.sh <attend> <mnist folder> <fixture folder>
# The files behind the BadInput.* ctest cases (tests/apps/bad_inputs.cmake): a tiny
# IDX data set made with `attend data`, tiny checkpoints of the kinds the commands
# need, and broken copies of each kind of file attend reads. Everything is made afresh
# in <fixture folder>; only coreutils and gzip besides attend (no Python), in seconds.
set -euo pipefail
attend=$1
mnist=$2
T=$3
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # spares attend its re-exec
export LC_ALL=C  # grep and sed see bytes, not characters

rm -rf "$T"
mkdir -p "$T"/{ckpt,img,out,captions}

# ---------------------------------------------------------------- helpers

# Bytes from hex text: hexbin 89504e47 > file
hexbin() { printf '%b' "$(printf '%s' "$1" | sed 's/../\\x&/g')"; }
# Hex text of a file's bytes.
binhex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
# CRC-32 (as PNG and zip use it) of stdin as 8 hex digits, big-endian: gzip's trailer
# holds it little-endian.
crc32_be() { gzip -c | tail -c 8 | head -c 4 | od -An -tx1 | tr -d ' \n' | sed -E 's/(..)(..)(..)(..)/\4\3\2\1/'; }
# Adler-32 of hex text, as 8 hex digits (zlib's trailer).
adler32() {
  local a=1 b=0 byte
  for byte in $(printf '%s' "$1" | sed 's/../& /g'); do
    a=$(((a + 16#$byte) % 65521))
    b=$(((b + a) % 65521))
  done
  printf '%04x%04x' "$b" "$a"
}
# A PNG chunk (length, type, data, CRC) as hex: png_chunk IHDR <hex data>
png_chunk() {
  local body
  body=$(printf '%s' "$1" | od -An -tx1 | tr -d ' \n')$2
  printf '%08x%s%s' $((${#2} / 2)) "$body" "$(hexbin "$body" | crc32_be)"
}
# A PNG of width x height pixels of colour type (0 grey, 2 RGB) whose pixels are the
# hex text `raw` (each row a filter byte 00 and its samples), in one stored deflate block.
png_file() {
  local width=$1 height=$2 colour=$3 raw=$4 n len
  n=$((${#raw} / 2))
  len=$(printf '%04x' "$n")
  local nlen
  nlen=$(printf '%04x' $((n ^ 0xFFFF)))
  local zlib=7801"01${len:2:2}${len:0:2}${nlen:2:2}${nlen:0:2}$raw$(adler32 "$raw")"
  hexbin "89504e470d0a1a0a$(png_chunk IHDR "$(printf '%08x%08x' "$width" "$height")08$(printf '%02x' "$colour")000000")$(png_chunk IDAT "$zlib")$(png_chunk IEND '')"
}
# Flips every bit of the byte at `offset` of `file`.
flip_byte() {
  local file=$1 offset=$2 byte
  byte=$(od -An -tu1 -j "$offset" -N1 "$file" | tr -d ' ')
  hexbin "$(printf '%02x' $((byte ^ 0xFF)))" | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
}
# Little-endian unsigned integer of `bytes` bytes at `offset` of `file`.
uint_le() { od -An -tu"$3" --endian=little -j "$2" -N"$3" "$1" | tr -d ' '; }
# The first byte of the stored data of the zip record whose local header is at `header`.
zip_data_start() {
  echo $(($2 + 30 + $(uint_le "$1" $(($2 + 26)) 2) + $(uint_le "$1" $(($2 + 28)) 2)))
}
# Rewrites the CRC-32 of the zip record holding byte `offset`, after that record's
# stored bytes were changed in place: in its central directory entry, and in its local
# header or, as LibTorch writes them, in the data descriptor after its bytes. The
# records are found through the central directory (LibTorch stores them uncompressed,
# so a signature may also occur by chance inside a tensor).
fix_zip_crc() {
  local file=$1 offset=$2 header=-1 entry="" h local_at
  for h in $(grep -obUaP 'PK\x01\x02' "$file" | cut -d: -f1); do
    local_at=$(uint_le "$file" $((h + 42)) 4)
    if [ "$local_at" -le "$offset" ] && [ "$local_at" -gt "$header" ] &&
       [ "$(od -An -tx1 -j "$local_at" -N4 "$file" | tr -d ' ')" = 504b0304 ]; then
      header=$local_at
      entry=$h
    fi
  done
  local size start crc crc_at
  size=$(uint_le "$file" $((entry + 20)) 4)
  start=$(zip_data_start "$file" "$header")
  crc=$(dd if="$file" bs=1 skip="$start" count="$size" status=none | crc32_be | sed -E 's/(..)(..)(..)(..)/\4\3\2\1/')
  hexbin "$crc" | dd of="$file" bs=1 seek=$((entry + 16)) conv=notrunc status=none
  crc_at=$((header + 14))
  if [ $(($(uint_le "$file" $((header + 6)) 2) & 8)) -ne 0 ]; then  # a data descriptor follows the bytes
    crc_at=$((start + size))
    [ "$(od -An -tx1 -j "$crc_at" -N4 "$file" | tr -d ' ')" = 504b0708 ] && crc_at=$((crc_at + 4))
  fi
  hexbin "$crc" | dd of="$file" bs=1 seek="$crc_at" conv=notrunc status=none
}

# ---------------------------------------------------------------- data and models

# 32 cluttered 28x28 digits per split, and 3 test scenes as PNG files.
"$attend" --threads 1 data cluttered --source "$mnist" --count 32 --canvas 28 --sheet 0 --png 3 --out "$T/idx" >/dev/null

# The three kinds the commands need, trained for one short epoch, side by side.
"$attend" --threads 1 train ram --data "$T/idx" --epochs 1 --batch 16 --val-count 8 --glimpses 2 --glimpse-size 6 \
  --hidden 16 --what-size 8 --where-size 8 --glimpse-features 16 --run-dir "$T/ram" >"$T/ram.log" 2>&1 &
ram=$!
"$attend" --threads 1 train cam --scenes objects --source "$mnist" --canvas 32 --objects 1-2 --count 16 --val-count 4 \
  --test-count 4 --epochs 1 --batch 8 --cam-filters 4,6 --cam-pools 1 --run-dir "$T/cam" >"$T/cam.log" 2>&1 &
cam=$!
"$attend" --threads 1 train captioner --scenes objects --source "$mnist" --canvas 32 --level 1 --count 8 \
  --val-count 0 --test-count 2 --epochs 1 --filters 4 --embed 4 --hidden 8 --attention-size 4 \
  --run-dir "$T/captioner" >"$T/captioner.log" 2>&1 &
captioner=$!
for job in ram cam captioner; do
  wait "${!job}" || { echo "training the $job fixture failed:"; cat "$T/$job.log"; exit 1; }
done

# ---------------------------------------------------------------- IDX data sets

idx_copy() {  # a copy of the good data set, to break one file of
  mkdir -p "$T/$1"
  cp "$T"/idx/*-ubyte "$T/$1/"
}
images=train-images-idx3-ubyte
labels=train-labels-idx1-ubyte
idx_copy idx-truncated
head -c 10000 "$T/idx/$images" >"$T/idx-truncated/$images"
idx_copy idx-trailing
printf 'extra' >>"$T/idx-trailing/$images"
idx_copy idx-empty
: >"$T/idx-empty/$images"
idx_copy idx-text
printf 'these are not the digits you are looking for\n' >"$T/idx-text/$images"
idx_copy idx-magic  # type byte 0x0D (float) instead of 0x08 (unsigned byte)
hexbin 0d | dd of="$T/idx-magic/$images" bs=1 seek=2 conv=notrunc status=none
idx_copy idx-huge  # dims 2^31-1 x 28 x 28
hexbin 7fffffff | dd of="$T/idx-huge/$images" bs=1 seek=4 conv=notrunc status=none
idx_copy idx-rank  # the labels' file where the images' belongs
cp "$T/idx/$labels" "$T/idx-rank/$images"
idx_copy idx-no-labels
rm "$T/idx-no-labels/$labels"
idx_copy idx-count  # 31 labels for 32 images
head -c $((8 + 31)) "$T/idx/$labels" >"$T/idx-count/$labels"
hexbin 0000001f | dd of="$T/idx-count/$labels" bs=1 seek=4 conv=notrunc status=none
idx_copy idx-label200  # the first training label is 200
hexbin c8 | dd of="$T/idx-label200/$labels" bs=1 seek=8 conv=notrunc status=none
idx_copy idx-shape  # test images 14x56 (the same bytes as 28x28) while training images are 28x28
hexbin 0000000e00000038 | dd of="$T/idx-shape/t10k-images-idx3-ubyte" bs=1 seek=8 conv=notrunc status=none
mkdir -p "$T/idx-gz-truncated" "$T/idx-gz-text"
for f in "$T"/idx/*-ubyte; do
  gzip -c "$f" >"$T/idx-gz-truncated/$(basename "$f").gz"
  cp "$T/idx-gz-truncated/$(basename "$f").gz" "$T/idx-gz-text/"
done
gz="$T/idx-gz-truncated/$images.gz"
head -c $(($(stat -c %s "$gz") / 2)) "$gz" >"$gz.part" && mv "$gz.part" "$gz"
printf 'not gzip at all\n' >"$T/idx-gz-text/$images.gz"

# ---------------------------------------------------------------- checkpoints

good=$T/ram/last.pt
size=$(stat -c %s "$good")
head -c $((size / 2)) "$good" >"$T/ckpt/truncated.pt"
printf 'a text file named like a checkpoint\n' >"$T/ckpt/text.pt"
: >"$T/ckpt/empty.pt"
mkdir -p "$T/ckpt/folder.pt"
# Bytes flipped inside a weight: the middle of the archive's first record, a tensor.
cp "$good" "$T/ckpt/flipped.pt"
first=$(zip_data_start "$good" 0)
flip_byte "$T/ckpt/flipped.pt" $((first + $(uint_le "$good" 18 4) / 2))
# A well-formed checkpoint (every CRC right) of a model kind attend does not know.
cp "$good" "$T/ckpt/unknown-kind.pt"
at=$(grep -obUa '"kind":"ram"' "$T/ckpt/unknown-kind.pt" | head -1 | cut -d: -f1)
printf 'rxm' | dd of="$T/ckpt/unknown-kind.pt" bs=1 seek=$((at + 8)) conv=notrunc status=none
fix_zip_crc "$T/ckpt/unknown-kind.pt" "$at"

# ---------------------------------------------------------------- images

pngs=("$T"/idx/png/*.png)
cp "${pngs[0]}" "$T/img/good.png"
mkdir -p "$T/img/mixed"
cp "${pngs[0]}" "$T/img/mixed/a.png"
cp "${pngs[1]}" "$T/img/mixed/c.png"
head -c $(($(stat -c %s "${pngs[2]}") / 2)) "${pngs[2]}" >"$T/img/mixed/b.png"
cp "$T/img/mixed/b.png" "$T/img/truncated.png"
cp "${pngs[0]}" "$T/img/flipped.png"
flip_byte "$T/img/flipped.png" $(($(stat -c %s "${pngs[0]}") / 2))
: >"$T/img/empty.png"
printf 'a text file named like an image\n' >"$T/img/text.png"
mkdir -p "$T/img/folder.png" "$T/img/no-images"
printf 'notes\n' >"$T/img/no-images/notes.txt"
# A PNG whose header claims 60000x60000 (its chunks and CRCs are right; the pixels
# that follow are those of a 1x1 image).
png_file 60000 60000 0 0000 >"$T/img/huge.png"
# Well-formed chunks (every CRC right) around zlib data that is not: libpng's own
# "libpng error: ..." line is what attend must keep off stderr.
hexbin "89504e470d0a1a0a$(png_chunk IHDR 00000010000000100800000000)$(png_chunk IDAT 789cc8c9cacbcccdcecfd0d1d2d3d4d5)$(png_chunk IEND '')" \
  >"$T/img/bad-zlib.png"
# An 8x8 colour PNG (the models above take grey images).
row=00$(printf 'ff8000%.0s' 1 2 3 4 5 6 7 8)
png_file 8 8 2 "$(printf "$row%.0s" 1 2 3 4 5 6 7 8)" >"$T/img/colour.png"
# 32x32 grey scenes, the captioner's input size (so it fits none and says nothing), in
# a folder with a truncated one between them.
mkdir -p "$T/img/mixed32"
raw=""
for y in $(seq 0 31); do
  raw+=00$(for x in $(seq 0 31); do printf '%02x' $(((x * 8 + y * 3) % 256)); done)
done
png_file 32 32 0 "$raw" >"$T/img/mixed32/a.png"
cp "$T/img/mixed32/a.png" "$T/img/mixed32/c.png"
head -c 100 "$T/img/mixed32/a.png" >"$T/img/mixed32/b.png"
# Video: a text file named like one.
printf 'not a video\n' >"$T/img/text.mp4"

# ---------------------------------------------------------------- captions, paths

printf '{"images": [{"filename": 7, "split": "train", "sentences": "a digit"}]}\n' >"$T/captions/bad-fields.json"
printf 'not json {\n' >"$T/captions/not-json.json"
printf '[{"image": "a.png", "caption": "one"}]\n' >"$T/captions/candidates.json"
# A regular file where outputs would need a folder (root can write anywhere, so a
# read-only folder would not stop the tests when they run as root).
printf 'a file, not a folder\n' >"$T/file"

echo "bad-input fixtures in $T"
