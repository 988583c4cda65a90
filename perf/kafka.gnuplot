# The KoP benchmark's plot (perf/kafka.sh draws it; to redraw one from a run's series):
#   gnuplot -e "dir='perf/results/kafka-DATE-data'; out='x.png'; fio=1234.5" perf/kafka.gnuplot
# Two panels of bars, Kafka beside Pulsar for each round:
#   1. produce MB/s of 1 KiB messages (produce.dat: "round kafka pulsar");
#   2. cold drain MB/s of the backlog (drain.dat: "round kafka pulsar"), with fio's sequential
#      read of the same disk in the same run as a line (fio, MB/s; 0 leaves it out).
# MB are 10^6 bytes.

if (!exists("dir")) dir = '.'
if (!exists("out")) out = dir.'/kafka.png'
if (!exists("fio")) fio = 0
if (!exists("heading")) heading = 'KoP produce and drain'

has_points(f) = system('test -s "'.f.'" && echo 1 || echo 0') + 0

set terminal pngcairo size 1000,800 noenhanced font ',10'
set output out
set multiplot layout 2,1 title heading
set grid ytics
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top left
set yrange [0:*]
set xlabel 'round'
set ylabel 'MB/s'

set title 'produce, 1 KiB messages, acks after fdatasync'
if (has_points(dir.'/produce.dat')) {
  plot dir.'/produce.dat' using 2:xtic(1) title 'Kafka (librdkafka)', '' using 3 title 'Pulsar'
} else {
  set label 9 'not run' at graph 0.5, 0.5 center; plot [0:1] [0:1] 1/0 notitle; unset label 9
}

set title 'cold drain of the backlog, one consumer'
set offsets 0, 0, graph 0.15, 0
if (has_points(dir.'/drain.dat')) {
  if (fio > 0) {
    plot dir.'/drain.dat' using 2:xtic(1) title 'Kafka consumer', '' using 3 title 'Pulsar consumer', \
      fio with lines lw 2 dt 2 title sprintf('fio sequential read %.0f MB/s', fio)
  } else {
    plot dir.'/drain.dat' using 2:xtic(1) title 'Kafka consumer', '' using 3 title 'Pulsar consumer'
  }
} else {
  set label 9 'not run' at graph 0.5, 0.5 center; plot [0:1] [0:1] 1/0 notitle; unset label 9
}
unset multiplot
