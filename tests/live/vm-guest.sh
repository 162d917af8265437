# Guest half of tests/live_tetragon.rs (vm test), run by vm-run inside the VM
# (/bin/sh = busybox ash, cwd /payload, Tetragon at $TETRAGON_ADDRESS).
# Learns a small workload with the agent (--learn-host-processes), exports the
# host allow-list for the kprobe and the LSM hook in enforce mode, loads one at
# a time, reruns the workload and one never-run binary, deletes it.
# Writes /out/results.txt: one "PHASE LABEL RC" line per step (the test holds
# the expected codes), /out/notes.txt (outputs), the exports and tp lists.
# After a policy is loaded only shell builtins, busybox applets, the agent and
# tetra run: they were all run while learning, so they stay allowed.
# Under each policy the agent must record the denial of /t/new/true as a
# violation: the guest waits for the agent to follow the loaded policy (its
# log line, then the re-subscription's snapshot), runs it, and writes
# `debug violations` and `debug policies` (JSON) to /out for the test to check.
B=/payload/tetragon-learner
S=/work/admin.sock
R=/out/results.txt
N=/out/notes.txt
T="$TETRA --server-address $TETRAGON_ADDRESS"
: > $R
: > $N
res() { echo "$*" >> $R; echo "vm-guest: $*"; }
note() { echo "== $*" >> $N; cat /tmp/run.out >> $N 2>/dev/null; }
info() { echo "vm-guest: $*"; echo "== $*" >> $N; }
run() { "$@" > /tmp/run.out 2>&1; rc=$?; }
FOLLOW='following their events'
follows() { grep "$FOLLOW" /out/agent.log | grep -c "\"$1\""; } # NAME: its follow lines
last_follows() { grep "$FOLLOW" /out/agent.log | tail -n 1 | grep -q "\"$1\""; }
taken() { # snapshots taken so far (one per stream re-subscription)
	$B admin --admin-socket $S status 2>/dev/null |
		sed -n 's/.*"taken": *\([0-9][0-9]*\).*/\1/p' | head -n 1
}
workload() { # PHASE
	run /t/echo hi; res "$1 symlink /t/echo -> /bin/busybox $rc"
	run /t/farm/echo hi; res "$1 farm /t/farm/echo -> ../bb $rc"
	run /t/farm/true; res "$1 farm /t/farm/true -> ../bb $rc"
	run /t/x.sh; res "$1 script /t/x.sh $rc"
	run /bin/sh -c 'cd /t && ./x.sh'; res "$1 script cd /t && ./x.sh $rc"
	run /t/pre/sleep 0; res "$1 pre-started /t/pre/sleep again $rc"
}

mkdir -p /t/pre /t/new /t/farm /work
ln -s /bin/busybox /t/echo
# A busybox-style farm on its own copy: only the hooks' view (the resolved
# /t/bb) can allow it; /bin/busybox is allowed anyway (the guest's shell).
cp /bin/busybox /t/bb
ln -s ../bb /t/farm/echo
ln -s ../bb /t/farm/true
printf '#!/bin/sh\nexit 0\n' > /t/x.sh
chmod +x /t/x.sh
cp /bin/busybox /t/pre/sleep  # runs only before the agent starts, then again under enforcement
cp /bin/busybox /t/new/true   # never runs until a policy is enforced
/t/pre/sleep 600 &

$B run --tetragon-address "$TETRAGON_ADDRESS" --db /work/db --admin-socket $S \
	--learn-host-processes --backfill off --export-log "$TETRAGON_EXPORT_LOG" \
	--metrics-address 127.0.0.1:9099 > /out/agent.log 2>&1 &
AGENT=$!
ok=1
i=0
while [ $i -lt 60 ]; do
	$B admin --admin-socket $S status > /tmp/status.json 2>/dev/null &&
		grep -q '"ready": true' /tmp/status.json && { ok=0; break; }
	sleep 1; i=$((i + 1))
done
res "agent ready $ok"
# The agent's observe policies (hook views): wait until /readyz reports none pending.
ok=1
i=0
while [ $i -lt 90 ]; do
	if wget -q -O /tmp/readyz.json http://127.0.0.1:9099/readyz 2>/dev/null &&
		grep -q '"hook_views":{' /tmp/readyz.json && ! grep -q '"status":"pending"' /tmp/readyz.json; then
		ok=0; break
	fi
	sleep 1; i=$((i + 1))
done
res "agent hook-views-settled $ok"
cp /tmp/readyz.json /out/readyz.json
for v in opened loaded; do
	grep -q "\"$v\":{[^}]*\"status\":\"active\"" /tmp/readyz.json
	res "hookview $v-active $?"
done
$T tp list -o json > /out/tplist-observe.json 2>&1
echo "vm-guest: hook views after ${i}s: $(cat /tmp/readyz.json)"

workload learning
sleep 5
run $B export --admin-socket $S --format json --output /out/learned-before.json
note "export json (learning): rc $rc"
for hook in kprobe lsm; do
	run $B export --admin-socket $S --format tracingpolicy --hook $hook --mode enforce \
		--output /out/policy-$hook.yaml
	res "export-$hook tracingpolicy enforce $rc"
	note "export --hook $hook: rc $rc"
done

for hook in kprobe lsm; do
	F=/out/policy-$hook.yaml
	NAME=
	[ -f $F ] && while read -r k v; do
		case $k in name:) NAME=${v#\"}; NAME=${NAME%\"}; break ;; esac
	done < $F
	n0=$(follows "$NAME")
	t0=$(taken)
	run $T tracingpolicy add $F
	res "load-$hook tp add $rc"
	note "tp add $F (name '$NAME'): rc $rc"
	[ $rc = 0 ] || { [ -n "$NAME" ] && $T tracingpolicy delete "$NAME" > /dev/null 2>&1; continue; }
	# The agent reads the policy list every 5 s, then re-subscribes its stream.
	ok=1
	i=0
	while [ $i -lt 30 ]; do
		[ "$(follows "$NAME")" -gt "$n0" ] && { ok=0; break; }
		sleep 1; i=$((i + 1))
	done
	res "follow-$hook logged $ok"
	j=0
	while [ $j -lt 20 ]; do
		t=$(taken)
		[ -n "$t" ] && [ -n "$t0" ] && [ "$t" -gt "$t0" ] && break
		sleep 1; j=$((j + 1))
	done
	sleep 1
	info "$hook: follow line after ${i}s, snapshot $t0 -> $t after ${j}s more"
	workload enforce-$hook
	$B debug violations --admin-socket $S --format json > /tmp/v-before.json 2>&1
	run /t/new/true
	res "enforce-$hook never-run /t/new/true $rc"
	note "never-run under $hook: rc $rc"
	# A denial has no process_exec: the agent says "denied" once 2 s passed
	# without an exec of that pid and another event came (any exec will do).
	sleep 3
	run /t/echo after
	ok=1
	i=0
	while [ $i -lt 20 ]; do
		$B debug violations --admin-socket $S --format json > /tmp/v.json 2>&1
		if ! cmp -s /tmp/v.json /tmp/v-before.json && grep -q '"mode": "denied"' /tmp/v.json; then
			ok=0; break
		fi
		sleep 1; i=$((i + 1))
	done
	res "violations-$hook changed $ok"
	info "$hook: violations after ${i}s more: $(cat /tmp/v.json)"
	cp /tmp/v.json /out/violations-$hook.json
	run $B debug policies --admin-socket $S --format json
	cp /tmp/run.out /out/policies-$hook.json
	note "debug policies under $hook: rc $rc"
	$T tp list -o json > /out/tplist-$hook.json 2>&1
	run $B export --admin-socket $S --format json --output /out/learned-$hook.json
	note "export json after $hook: rc $rc"
	run $T tracingpolicy delete "$NAME"
	res "unload-$hook tp delete $rc"
	note "tp delete $NAME: rc $rc"
	# The next hook's policy has the same name: wait until the agent no longer
	# follows this one, so that loading the next is a change it logs (lsm is last).
	[ $hook = lsm ] && continue
	i=0
	while [ $i -lt 15 ] && last_follows "$NAME"; do sleep 1; i=$((i + 1)); done
	info "$hook: unfollowed after ${i}s"
done
kill $AGENT
wait $AGENT
res "agent stopped $?"
exit 0
