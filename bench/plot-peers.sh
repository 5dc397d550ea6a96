#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# bench/plot-peers.sh - publish the results of bench/bench-peers.sh: copy
# its tables and data into a directory and draw the plots with gnuplot.
#
#   bench/plot-peers.sh <results dir> <output dir>
#
# Writes into <output dir>: peers.md (the tables), the .dat files, and
#   peers-<link>.png     bars per workload: each target's median over the
#                        link's reference (fio's nbd engine; nbd-client for
#                        the trace), log scale
#   peers-hot.png        bars per hot workload, over dm-linear
#   peers-hydration-<link>.png
#                        the link's received MiB/s over time while
#                        remote-cow and dm-clone hydrate and fio's nbd
#                        engine reads the export (first repetition)
#
# make bench-peers runs it on the host after the VM run.
set -euo pipefail

die() { printf 'plot-peers: %s\n' "$*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: plot-peers.sh <results dir> <output dir>"
in=$1 out=$2
command -v gnuplot >/dev/null || die "gnuplot is not installed (make deps)"
[ -f "$in/peers.md" ] || die "no $in/peers.md: the benchmark did not finish"
mkdir -p "$out"
rm -f "$out"/peers*.png "$out"/bars-*.dat "$out"/hydrate-*.dat "$out"/peers.md
cp "$in"/peers.md "$in"/*.dat "$out"/
shaped=$(cat "$in/shaped-label" 2>/dev/null || echo shaped)

# bars <dat> <png> <title> <y label> [log]
bars() {
	local n scale="set yrange [0:*]"
	[ "${5:-}" != log ] || scale="set logscale y; set yrange [0.01:*]"
	n=$(head -n1 "$1" | wc -w)
	gnuplot <<GP
set terminal pngcairo size 900,480 font "sans,10"
set output "$2"
set title "$3"
set ylabel "$4"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical
set grid ytics
$scale
set datafile missing "-"
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black"
plot for [i=2:$n] "$1" using i:xtic(1) title columnheader(i)
GP
}

# hydration <link> <png> <title>
hydration() {
	local f plot=''
	for f in "$out/hydrate-$1-remote-cow.dat" "$out/hydrate-$1-dm-clone.dat" \
		"$out/hydrate-$1-fio-nbd.dat"; do
		[ -s "$f" ] || continue
		t=${f##*/hydrate-"$1"-}
		plot+="${plot:+, }\"$f\" using 1:2 with steps lw 2 title \"${t%.dat}\""
	done
	[ -n "$plot" ] || return 0
	gnuplot <<GP
set terminal pngcairo size 900,420 font "sans,10"
set output "$2"
set title "$3"
set xlabel "seconds"
set ylabel "MiB/s received over the link"
set grid
set yrange [0:*]
set key top right
plot $plot
GP
}

read -r -a links <"$in/links"
for lk in "${links[@]}"; do
	case $lk in
	shaped) what=$shaped ;;
	*) what="bare veth link" ;;
	esac
	bars "$out/bars-$lk.dat" "$out/peers-$lk.png" \
		"Over the $what: median over fio's nbd engine (trace: over nbd-client)" \
		"ratio (log scale)" log
	hydration "$lk" "$out/peers-hydration-$lk.png" \
		"Full hydration over the $what (first repetition)"
done
if [ -f "$out/bars-hot.dat" ]; then
	bars "$out/bars-hot.dat" "$out/peers-hot.png" \
		"Present extents, local RAM disk: median over dm-linear" "ratio"
fi
ls "$out"
