# The chat job-restart timeline (perf/chat.sh --scenario job-restart draws it; to redraw one):
#   gnuplot -e "dat='perf/results/chat-DATE/job-restart.timeline'; out='x.png'; kill_at=20; restart_at=80" \
#     perf/chat/timeline.gnuplot
# Two panels over the seconds since the first push: deliveries per second, and the lag (messages
# acknowledged by the push API that some connection has not received yet, summed over the
# connections) with each second's p99 delivery latency. Vertical lines mark the Job worker's kill
# and restart. dat is the load client's --timeline file:
#   t_s wall_s deliveries p50_ms p99_ms max_ms lag_msgs acked open

if (!exists("dat")) dat = 'job-restart.timeline'
if (!exists("out")) out = 'job-restart.png'
if (!exists("kill_at")) kill_at = -1
if (!exists("restart_at")) restart_at = -1
if (!exists("heading")) heading = 'chat job-restart'

set terminal pngcairo size 1100,800 noenhanced font ',10'
set output out
set multiplot layout 2,1 title heading
set grid
set key outside right top
set lmargin at screen 0.08
set rmargin at screen 0.78
set xlabel 'seconds since the first push'
if (kill_at >= 0) { set arrow 1 from kill_at, graph 0 to kill_at, graph 1 nohead dashtype 2 lc rgb 'red' }
if (restart_at >= 0) { set arrow 2 from restart_at, graph 0 to restart_at, graph 1 nohead dashtype 2 lc rgb 'dark-green' }

set title 'deliveries per second (red: job killed, green: job restarted)'
set ylabel 'deliveries/s'
set yrange [0:*]
plot dat using 1:3 with lines linewidth 2 title 'deliveries/s'

set title 'lag and delivery latency'
set ylabel 'messages behind'
set y2label 'p99 ms'
set ytics nomirror
set y2tics
set y2range [0:*]
plot dat using 1:7 with lines linewidth 2 title 'lag (messages)', \
     dat using 1:5 axes x1y2 with lines title 'p99 latency (ms), each second'
unset multiplot
