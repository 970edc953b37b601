#!/bin/sh
# The floor of a rollback on one app host (bench/bench.py --floors): what no rollback can skip,
# in one task and with nothing recorded - point the release link at the release it points at
# (a new link renamed over it) and restart each instance, one after the other, each until its
# health endpoint answers. Argument: the instances' unit name (the app role's _app_unit_name).
set -eu
unit=$1
units=$(systemctl list-units --plain --no-legend --state=active "$unit@*.service" | awk '{print $1}')
first=$(echo "$units" | head -n 1)
link=$(systemctl show --property=WorkingDirectory --value "$first")
ln -sfn "$(readlink "$link")" "$link.floor"
mv -T "$link.floor" "$link"
for service in $units; do
  listen=$(systemctl show --property=Listen --value "${service%.service}.socket" | cut -d ' ' -f 1)
  systemctl restart "$service"
  tries=0
  until python3 -c "import urllib.request; urllib.request.urlopen('http://$listen/health', timeout=1)" 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 200 ] || { echo "$service: no health answer after 10 s" >&2; exit 1; }
    sleep 0.05
  done
done
