# The chat fan-out benchmark's plot (perf/chat.sh draws it; to redraw one from a run):
#   gnuplot -e "dat='perf/results/chat-DATE/deliveries.dat'; out='x.png'" perf/chat/fanout.gnuplot
# Deliveries per second against the number of connections N, for Magnetar's gateway, for nginx
# with nchan, and the ideal N x rate. dat holds "N ideal magnetar nchan" per line, NaN where a
# server was not measured. Both axes are logarithmic: N spans 10k to 100k and the servers may be
# an order of magnitude apart.

if (!exists("dat")) dat = 'deliveries.dat'
if (!exists("out")) out = 'deliveries.png'
if (!exists("heading")) heading = 'chat fan-out'

set terminal pngcairo size 900,600 noenhanced font ',10'
set output out
set title heading
set grid
set key left top
set logscale xy
set xlabel 'connections (N)'
set ylabel 'deliveries per second'
set format y '%.0s%c'
set format x '%.0s%c'
plot dat using 1:2 with linespoints dashtype 2 linewidth 2 pointtype 1 title 'ideal N x rate', \
     dat using 1:3 with linespoints linewidth 2 pointtype 7 title 'Magnetar gateway (1 core)', \
     dat using 1:4 with linespoints linewidth 2 pointtype 5 title 'nginx + nchan (1 worker)'
