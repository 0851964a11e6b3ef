#!/usr/bin/env bash
# Gather the real photographs of ../shared/data/TRAINING-DATA.md into DEST/{train,val,eval}.
#   train: the whitelisted photos minus the validation ones (the only photos a default may learn from)
#   val:   three whitelisted photos set aside for model selection
#   eval:  photos from the same packages that are NOT on the whitelist (never trained on): the
#          held-out set of benchmarks/inpaint_bins.py
# Debian packages are unpacked with dpkg-deb, nothing is installed. Usage: get_photos.sh [DEST]
set -euo pipefail
DEST=${1:-data/photos}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DEST"/{train,val,eval}
( cd "$WORK" && apt-get download mate-backgrounds lomiri-wallpapers-16.04 plasma-workspace-wallpapers opencv-doc >/dev/null \
  && for f in *.deb; do dpkg-deb -x "$f" x; done )
S=$WORK/x/usr/share
pick() { cp "$1" "$DEST/$2/$3"; }
largest() { ls -S "$S/wallpapers/$1/contents/images/"* | head -n 1; }
for n in Blinds Dune FreshFlower Garden GreenMeadow RainDrops TwoWings; do pick "$S/backgrounds/mate/nature/$n.jpg" train "mate_$n.jpg"; done
for n in Bridge_by_Sander_Klootwijk Dragonfly_by_Bolly Picture_0B_by_freespace aitzgorri_by_Aitzol_Berasategi \
         free_by_Peter_Nerlich sunset_by_Aitzol_Berasategi; do pick "$S/backgrounds/$n.jpg" train "lomiri_$n.jpg"; done
for n in ColdRipple DarkestHour Grey Kite OneStandsOut summer_1am Volna; do pick "$(largest $n)" train "plasma_$n.jpg"; done
D=$S/doc/opencv-doc/examples/data
for n in aero1 aero3 apple orange board home ela_original box_in_scene rubberwhale1 smarties messi5 licenseplate_motion stuff; do
  f=$(ls "$D"/$n.* | head -n 1); pick "$f" train "opencv_$(basename "$f")"; done
pick "$D/../../../opencv-doc/examples/data/alphamat/input_images/plant.jpg" train opencv_plant.jpg 2>/dev/null || \
  cp "$(find "$S/doc/opencv-doc" -path '*alphamat/input_images/plant.jpg' | head -n 1)" "$DEST/train/opencv_plant.jpg"
cp "$(find "$S/doc/opencv-doc" -path '*hfs/data/000.jpg' | head -n 1)" "$DEST/train/opencv_hfs_000.jpg"
# validation: three whitelisted photos, moved out of train
for f in mate_Garden.jpg lomiri_Dragonfly_by_Bolly.jpg opencv_home.jpg; do mv "$DEST/train/$f" "$DEST/val/$f"; done
# held-out evaluation photos (not on the whitelist)
for n in LadyBird Storm Wood YellowFlower Aqua; do pick "$S/backgrounds/mate/nature/$n.jpg" eval "mate_$n.jpg"; done
for n in Wine_by_Jakkub_Mede friends_by_Aitzol_Berasategi greentock_by_Peter_Nerlich Picture_1A_by_freespace; do
  pick "$S/backgrounds/$n.jpg" eval "lomiri_$n.jpg"; done
for n in Altai Autumn BytheWater Canopee Cascade EveningGlow FallenLeaf IceCold Path; do
  pick "$(largest $n)" eval "plasma_$n.jpg"; done
for n in baboon building butterfly fruits HappyFish leuvenA graf1; do f=$(ls "$D"/$n.* | head -n 1); pick "$f" eval "opencv_$(basename "$f")"; done
echo "train: $(ls "$DEST/train" | wc -l)  val: $(ls "$DEST/val" | wc -l)  eval: $(ls "$DEST/eval" | wc -l)  in $DEST"
