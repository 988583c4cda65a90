# The catch-up benchmark's plot (perf/catchup.sh draws it; to redraw one from a run's series):
#   gnuplot -e "dir='perf/results/catchup-DATE-data'; out='x.png'; modes='on off'; nats=1" \
#     perf/catchup.gnuplot
# Three panels, one line per prefetch mode in each:
#   1. the cold drain by one subscription, MB/s each second (and NATS JetStream's, nats=1);
#   2. the isolation phase: MB/s delivered to the 4 draining subscriptions together;
#   3. the tail consumer's end-to-end p99 each second, alone and during the drain (log scale:
#      a disturbed tail is often ten times slower, not ten percent).
# Series files in dir, "seconds value" per line: drain-MODE.dat, nats.dat, isodrain-MODE.dat,
# tail-MODE-alone.dat, tail-MODE-during.dat. Time is seconds since the consumer was ready
# (panel 1) or since the topic A producer was (panels 2 and 3). MB are 10^6 bytes.

if (!exists("dir")) dir = '.'
if (!exists("out")) out = dir.'/catchup.png'
if (!exists("modes")) modes = 'on off'
if (!exists("nats")) nats = 0
if (!exists("heading")) heading = 'catch-up'

label(m) = (m eq 'default') ? 'no --prefetch option' : 'prefetch '.m
# A series may be empty (a drain shorter than one progress interval, a mode not run): each panel
# plots only the files that hold points, and says so when none does.
has_points(f) = system('test -s "'.f.'" && echo 1 || echo 0') + 0
add(cmd, f, using, title) = has_points(f) ? \
  cmd.(strlen(cmd) > 0 ? ', ' : '').sprintf("'%s' using %s with linespoints title '%s'", f, using, title) : cmd
empty_panel = "set label 9 'no data' at graph 0.5, 0.5 center; plot [0:1] [0:1] 1/0 notitle; unset label 9"

set terminal pngcairo size 1200,1200 noenhanced font ',10'
set output out
set multiplot layout 3,1 title heading
set grid
set key outside right top
set lmargin at screen 0.07
set rmargin at screen 0.74
set xlabel 'seconds'

set title 'cold drain, one subscription'
set ylabel 'MB/s'
set yrange [0:*]
cmd = ''
do for [m in modes] { cmd = add(cmd, dir.'/drain-'.m.'.dat', '1:2', label(m)) }
if (nats) { cmd = add(cmd, dir.'/nats.dat', '1:2', 'NATS JetStream') }
if (strlen(cmd) > 0) { eval('plot '.cmd) } else { eval(empty_panel) }

set title 'isolation: 4 subscriptions draining B, together'
cmd = ''
do for [m in modes] { cmd = add(cmd, dir.'/isodrain-'.m.'.dat', '1:2', label(m)) }
if (strlen(cmd) > 0) { eval('plot '.cmd) } else { eval(empty_panel) }

set title 'isolation: tail consumer end-to-end p99, each second'
set ylabel 'ms'
set logscale y
set yrange [*:*]
cmd = ''
do for [m in modes] { cmd = add(cmd, dir.'/tail-'.m.'-alone.dat', '1:($2 > 0 ? $2 : 1/0)', label(m).', alone') }
do for [m in modes] { cmd = add(cmd, dir.'/tail-'.m.'-during.dat', '1:($2 > 0 ? $2 : 1/0)', label(m).', during the drain') }
if (strlen(cmd) > 0) { eval('plot '.cmd) } else { unset logscale y; eval(empty_panel) }

unset multiplot
