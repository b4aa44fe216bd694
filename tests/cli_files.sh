#!/usr/bin/env bash
# `petl train` deletes or overwrites only what it created (docs: include/petl.h, "outputs"):
# a symlinked --out, --force on a folder that is not an adapter, a --checkpoint that is someone's
# file, bad --out / --checkpoint paths caught before training, two runs on one output, the
# litter of killed runs, and petl sweep's OUT/best. Real model, a few rows of real SST-2 copied
# from PETL_DATA_DIR.
# Environment (set by CTest): PETL, PETL_MODEL_DIR, PETL_DATA_DIR.
set -u
fail() { echo "cli_files: FAIL: $*" >&2; exit 1; }
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${PETL_DATA_DIR:?}"
src=$PETL_DATA_DIR/glue/SST-2
if [ ! -f "$src/train.tsv" ] || [ ! -f "$src/dev.tsv" ]; then
    exec bash "${0%/*}/skip.sh" cli_files data "no SST-2 under $PETL_DATA_DIR/glue"
fi
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; umount "$tmp/ro" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/sst" "$tmp/big"
head -n 41 "$src/train.tsv" > "$tmp/sst/train.tsv"
head -n 17 "$src/dev.tsv" > "$tmp/sst/dev.tsv"
head -n 2001 "$src/train.tsv" > "$tmp/big/train.tsv"
cp "$tmp/sst/dev.tsv" "$tmp/big/dev.tsv"
common=(--model "$PETL_MODEL_DIR" --task sst2 --data "$tmp/sst" --max-len 32 --batch 8
    --epochs 1 --threads 2)
train() { "$PETL" train "${common[@]}" "$@" > "$tmp/out" 2> "$tmp/err"; }
# Refused before any training: the model is never tokenized for, no epoch line is printed.
refused_early() { # STATUS PATTERN WHAT
    [ "$rc" -eq "$1" ] || fail "$3: exit $rc, expected $1: $(cat "$tmp/err")"
    grep -q -- "$2" "$tmp/err" || fail "$3: message: $(cat "$tmp/err")"
    ! grep -q 'epoch 1/' "$tmp/err" || fail "$3: refused only after training"
}
sum() { find "$1" -type f -exec sha256sum {} + | sed "s|$1||" | sort; }

train --out "$tmp/ad" || fail "first run: $(cat "$tmp/err")"
cp -r "$tmp/ad" "$tmp/ad.copy"

# 1. A symlinked --out is written through, never renamed away with its target emptied.
mkdir "$tmp/user"
echo "my notes" > "$tmp/user/notes.txt"
ln -s "$tmp/user" "$tmp/link"
train --out "$tmp/link" --force; rc=$?
refused_early 1 'is not a petl adapter folder (it holds notes.txt)' "link to a user folder"
[ -L "$tmp/link" ] && [ "$(cat "$tmp/user/notes.txt")" = "my notes" ] ||
    fail "link to a user folder: the link or the user's file changed"
ln -s "$tmp/ad" "$tmp/adlink"
train --out "$tmp/adlink" --force --seed 3 || fail "link to an adapter: $(cat "$tmp/err")"
[ -L "$tmp/adlink" ] || fail "link to an adapter: the link was replaced"
[ "$(readlink "$tmp/adlink")" = "$tmp/ad" ] || fail "link to an adapter: the link moved"
cmp -s "$tmp/ad/adapter.safetensors" "$tmp/ad.copy/adapter.safetensors" &&
    fail "link to an adapter: the target was not replaced"
train --out "$tmp/link/" --force; rc=$? # a trailing '/' makes lstat follow the link
refused_early 1 'is not a petl adapter folder (it holds notes.txt)' "link/ to a user folder"
train --out "$tmp/adlink/" --force --seed 4 || fail "link/ to an adapter: $(cat "$tmp/err")"
[ -L "$tmp/adlink" ] && [ "$(readlink "$tmp/adlink")" = "$tmp/ad" ] ||
    fail "link/ to an adapter: the link was replaced or moved"
ln -s "$tmp/nowhere" "$tmp/dangling"
train --out "$tmp/dangling" --force; rc=$?
refused_early 1 'symbolic link whose target' "dangling link"
[ -L "$tmp/dangling" ] && [ ! -e "$tmp/nowhere" ] || fail "dangling link: changed"
mkdir "$tmp/emptytarget"
ln -s "$tmp/emptytarget" "$tmp/emptylink"
train --out "$tmp/emptylink" || fail "link to an empty folder: $(cat "$tmp/err")"
[ -L "$tmp/emptylink" ] && [ -f "$tmp/emptytarget/adapter.safetensors" ] ||
    fail "link to an empty folder: not written through"

# 2. --force replaces only adapter folders; the message says what is there.
mkdir "$tmp/mine"
echo data > "$tmp/mine/results.csv"
before=$(sum "$tmp/mine")
train --out "$tmp/mine" --force; rc=$?
refused_early 1 'not a petl adapter folder (it holds results.csv)' "--force on a user folder"
[ "$(sum "$tmp/mine")" = "$before" ] || fail "--force on a user folder changed it"
train --out "$tmp/mine"; rc=$?
refused_early 1 'not a petl adapter folder' "a user folder without --force"
grep -q 'old adapter' "$tmp/err" && fail "a user folder is not 'the old adapter': $(cat "$tmp/err")"
mkdir "$tmp/hub" # another library's adapter_config.json
echo '{"config": {"reduction_factor": 16}}' > "$tmp/hub/adapter_config.json"
train --out "$tmp/hub" --force; rc=$?
refused_early 1 'adapter_config.json not written by petl' "--force on another library's adapter"
cp -r "$tmp/ad.copy" "$tmp/noted"
echo "keep me" > "$tmp/noted/README"
train --out "$tmp/noted" --force; rc=$?
refused_early 1 'it holds README' "--force on an adapter folder with a user file"
[ -f "$tmp/noted/README" ] || fail "the user's README was removed"
echo text > "$tmp/afile"
train --out "$tmp/afile" --force; rc=$?
refused_early 1 'exists and is not a folder' "--out naming a file"
[ "$(cat "$tmp/afile")" = text ] || fail "--out naming a file changed it"
train --out "$tmp/ad" --force --seed 5 || fail "--force on an adapter folder: $(cat "$tmp/err")"

# 3. --checkpoint: only a petl checkpoint may be overwritten.
printf 'sentence\tlabel\nmy data\t1\n' > "$tmp/data.tsv"
before=$(sha256sum < "$tmp/data.tsv")
train --out "$tmp/ck1" --checkpoint "$tmp/data.tsv"; rc=$?
refused_early 1 'is not a petl checkpoint' "--checkpoint naming a data file"
[ "$(sha256sum < "$tmp/data.tsv")" = "$before" ] || fail "the data file was overwritten"
[ ! -e "$tmp/ck1" ] || fail "an adapter was written despite the refusal"
ln -s "$tmp/data.tsv" "$tmp/cklink"
train --out "$tmp/ck1" --checkpoint "$tmp/cklink"; rc=$?
refused_early 1 'is a symbolic link' "--checkpoint naming a link"
train --out "$tmp/ck1" --checkpoint "$tmp/sst"; rc=$?
refused_early 1 'is not a file' "--checkpoint naming a folder"
# A petl checkpoint may be: keep one, then train again over it.
train --out "$tmp/ck2" --checkpoint "$tmp/mine.ckpt" --keep-checkpoint ||
    fail "--keep-checkpoint: $(cat "$tmp/err")"
[ -f "$tmp/mine.ckpt" ] || fail "--keep-checkpoint kept nothing"
train --out "$tmp/ck3" --checkpoint "$tmp/mine.ckpt" || fail "over a petl checkpoint: $(cat "$tmp/err")"
[ ! -e "$tmp/mine.ckpt" ] || fail "the run's own checkpoint was not removed"

# 4. Bad paths are usage errors or refusals before training.
for bad in . / .. "" "$tmp/." "$tmp/.."; do
    train --out "$bad"; rc=$?
    refused_early 2 'names a folder petl cannot replace\|the path is empty' "--out '$bad'"
done
train --out "$tmp/no/such/dir/ad"; rc=$?
refused_early 1 'does not exist' "--out in a missing folder"
train --out "$tmp/ck4" --checkpoint "$tmp/no/such/ck"; rc=$?
refused_early 1 'does not exist' "--checkpoint in a missing folder"
train --out "$tmp/afile/ad"; rc=$?
refused_early 1 'is not a folder' "--out under a file"
if mkdir "$tmp/ro" && mount -t tmpfs -o ro,size=1m tmpfs "$tmp/ro" 2> /dev/null; then
    train --out "$tmp/ro/ad"; rc=$?
    refused_early 1 'cannot write in' "--out on a read-only file system"
    train --out "$tmp/ck5" --checkpoint "$tmp/ro/ck"; rc=$?
    refused_early 1 'cannot write in' "--checkpoint on a read-only file system"
    umount "$tmp/ro"
else
    echo "cli_files: note: cannot mount a read-only tmpfs here; read-only parents not checked"
fi

# 5. Two runs on one output: the second is refused at once, naming the first.
"$PETL" train "${common[@]}" --data "$tmp/big" --epochs 3 --out "$tmp/busy" \
    --checkpoint "$tmp/shared.ckpt" > /dev/null 2> "$tmp/first.err" &
pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/.busy.lock" ] && break; sleep 0.1; done
[ -s "$tmp/.busy.lock" ] || fail "the first run took no lock: $(cat "$tmp/first.err")"
t0=$(date +%s)
train --out "$tmp/busy" --force; rc=$?
refused_early 1 "is in use by another run (pid $pid, started " "a second run on one --out"
grep -q "petl train --out $tmp/busy" "$tmp/err" || fail "the holder's command: $(cat "$tmp/err")"
train --out "$tmp/other" --checkpoint "$tmp/shared.ckpt"; rc=$?
refused_early 1 "shared.ckpt is in use by another run (pid $pid" "a second run on one checkpoint"
[ $(($(date +%s) - t0)) -lt 30 ] || fail "the second runs were not refused at once"
kill -9 "$pid"
wait "$pid" 2> /dev/null
pid=
# The kernel dropped the dead run's lock: the next run takes it.
[ -e "$tmp/.busy.lock" ] || fail "the killed run's lock file is gone (expected stale, harmless)"
train --out "$tmp/busy" --checkpoint "$tmp/shared.ckpt" || fail "after a killed holder: $(cat "$tmp/err")"
[ ! -e "$tmp/.busy.lock" ] && [ ! -e "$tmp/.shared.ckpt.lock" ] || fail "lock files left behind"

# 6. Litter of killed runs: removed under the lock; an adapter lost mid-replacement is restored.
mkdir "$tmp/lit"
cp -r "$tmp/ad.copy" "$tmp/lit/.a.old-999999999" # the replaced adapter; that process is gone
mkdir "$tmp/lit/.a.tmp-Ab12Cd" "$tmp/lit/.a.tmp-Zz99Yy"
cp "$tmp/ad.copy/adapter_config.json" "$tmp/lit/.a.tmp-Ab12Cd/"
echo partial > "$tmp/lit/.a.tmp-Ab12Cd/adapter.safetensors.tmp-q1w2e3"
echo "not petl's" > "$tmp/lit/.a.tmp-Zz99Yy/mine.txt"
echo partial > "$tmp/lit/a.checkpoint.safetensors.tmp-x9y8z7"
cp -r "$tmp/ad.copy" "$tmp/lit/.a.old-$$" # this shell is alive: not provably stale
train --out "$tmp/lit/a"; rc=$?
grep -q "restored $tmp/lit/a from $tmp/lit/.a.old-999999999" "$tmp/err" ||
    fail "no restore message: $(cat "$tmp/err")"
[ "$(sum "$tmp/lit/a")" = "$(sum "$tmp/ad.copy")" ] || fail "the restored adapter differs"
refused_early 1 'already holds an adapter; pass --force' "the restored adapter kept"
[ ! -e "$tmp/lit/.a.tmp-Ab12Cd" ] || fail "a killed run's temporary folder was left"
[ ! -e "$tmp/lit/a.checkpoint.safetensors.tmp-x9y8z7" ] || fail "a partial checkpoint was left"
grep -q "removed $tmp/lit/a.checkpoint.safetensors.tmp-x9y8z7" "$tmp/err" ||
    fail "the removal was not reported: $(cat "$tmp/err")"
[ -f "$tmp/lit/.a.tmp-Zz99Yy/mine.txt" ] || fail "a file petl did not write was removed"
[ -d "$tmp/lit/.a.old-$$" ] || fail "the folder of a live process was removed"
# With the adapter in place, a replaced copy left beside it is stale: removed.
cp -r "$tmp/ad.copy" "$tmp/lit/.a.old-999999998"
train --out "$tmp/lit/a" --force || fail "--force after litter: $(cat "$tmp/err")"
[ ! -e "$tmp/lit/.a.old-999999998" ] || fail "a stale replaced adapter was left"
ls -A "$tmp/lit" | grep -q 'lock' && fail "lock files left in $tmp/lit: $(ls -A "$tmp/lit")"

# petl sweep replaces only its own copy of the best adapter (OUT/best).
mkdir -p "$tmp/sw/best"
echo "keep me" > "$tmp/sw/best/notes.txt"
"$PETL" sweep --model "$PETL_MODEL_DIR" --task sst2 --data "$tmp/sst" --out "$tmp/sw" \
    --grid "seed=1" --threads 2 -- --epochs 1 --batch 8 --max-len 32 > /dev/null 2> "$tmp/err"
rc=$?
[ "$rc" -eq 1 ] || fail "sweep over a user's OUT/best: exit $rc: $(cat "$tmp/err")"
grep -q 'best holds notes.txt, which the sweep did not write' "$tmp/err" ||
    fail "sweep over a user's OUT/best: message: $(cat "$tmp/err")"
[ "$(cat "$tmp/sw/best/notes.txt" 2> /dev/null)" = "keep me" ] ||
    fail "sweep over a user's OUT/best moved or removed the user's file"

echo "cli_files: ok"
