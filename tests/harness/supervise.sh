#!/usr/bin/env bash
# supervise.sh PARENT_PID LOGFILE [--remove DIR] -- COMMAND [ARGS...]
# Runs COMMAND with its output in LOGFILE and stops it (TERM, then KILL after 5 s) when this
# script is signalled or when PARENT_PID (the test process) is gone — so a test that panics, times
# out or is killed leaves no orphan behind. With --remove, DIR is deleted once the parent is gone
# (a control plane kept in a static is never dropped).
set -u
parent=$1 log=$2 remove=
if [ "$3" = "--remove" ]; then
  remove=$4
  shift 2
fi
shift 3
"$@" >>"$log" 2>&1 &
child=$!
stop() {
  kill -TERM "$child" 2>/dev/null
  for _ in $(seq 50); do
    kill -0 "$child" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$child" 2>/dev/null
  if [ -n "$remove" ] && ! kill -0 "$parent" 2>/dev/null; then
    sleep 1 # let the other supervised processes of the directory stop first
    rm -rf "$remove"
  fi
  exit 0
}
trap stop TERM INT HUP
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do
  sleep 0.5 &
  wait $!
done
kill -0 "$parent" 2>/dev/null || stop
wait "$child" 2>/dev/null
exit $?
