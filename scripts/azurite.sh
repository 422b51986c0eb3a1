#!/usr/bin/env bash
# azurite.sh — run a local Azurite Table service for the store contract tests.
#
#   scripts/azurite.sh start   install Azurite (pinned, project-local) if needed,
#                              start the Table service in memory, wait until it
#                              answers; idempotent (a running instance is kept)
#   scripts/azurite.sh stop    stop the instance started by "start"; idempotent
#   scripts/azurite.sh env     print the export line for the tests:
#                                export AZURITE_TABLE_ENDPOINT=http://127.0.0.1:<port>/devstoreaccount1
#   scripts/azurite.sh status  exit 0 when running (prints the endpoint)
#
# Settings (environment):
#   AZURITE_TABLE_PORT  port to listen on (default 10002; when the default is
#                       taken by another process a free port is picked instead)
#   AZURITE_DIR         install + state folder (default <repo>/.tools/azurite)
#   AZURITE_START_TIMEOUT seconds to wait for the port (default 60)
#   AZURITE_INSTALL_TIMEOUT seconds allowed for npm install (default 900)
#
# Needs node and npm (the npm registry is reached once, on first start).
# Works without a terminal or stdin (CI runs it as root with no stdin).
set -euo pipefail

AZURITE_VERSION="3.37.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${AZURITE_DIR:-$repo_root/.tools/azurite}"
run_dir="$dir/run"
pid_file="$run_dir/azurite-table.pid"
port_file="$run_dir/azurite-table.port"
log_file="$run_dir/azurite-table.log"
pkg_dir="$dir/pkg"
bin="$pkg_dir/node_modules/.bin/azurite-table"
default_port=10002
start_timeout="${AZURITE_START_TIMEOUT:-60}"
install_timeout="${AZURITE_INSTALL_TIMEOUT:-900}"

log() { printf 'azurite.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# port_answers PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_answers() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# running: true when the pid file names a live Azurite process.
running() {
	[[ -s "$pid_file" ]] || return 1
	local pid
	pid="$(cat "$pid_file")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: the process must be our azurite.
	if [[ -r "/proc/$pid/cmdline" ]]; then
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'azurite' || return 1
	fi
	return 0
}

# install puts azurite@AZURITE_VERSION in $pkg_dir, atomically: npm works
# in a staging folder that replaces $pkg_dir only when it succeeded, and a
# marker names the installed version, so an interrupted install is redone.
install() {
	command -v node >/dev/null || die "node is not installed (apt-get install -y nodejs npm)"
	command -v npm >/dev/null || die "npm is not installed (apt-get install -y npm)"
	if [[ -x "$bin" && -f "$pkg_dir/.installed-$AZURITE_VERSION" ]]; then
		return 0
	fi
	log "installing azurite@$AZURITE_VERSION into $pkg_dir"
	mkdir -p "$dir"
	local staging="$pkg_dir.staging" npm_cmd=()
	rm -rf "$staging"
	mkdir -p "$staging"
	# Bound the install: npm retries a failing registry for a long time.
	if command -v timeout >/dev/null; then
		npm_cmd=(timeout "$install_timeout")
	fi
	npm_cmd+=(npm install --prefix "$staging" --no-audit --no-fund --no-update-notifier
		--loglevel=error "azurite@$AZURITE_VERSION")
	if ! "${npm_cmd[@]}" </dev/null >&2; then
		rm -rf "$staging"
		die "npm install azurite@$AZURITE_VERSION failed or took over ${install_timeout}s (registry reachable? TLS interception needs NODE_EXTRA_CA_CERTS)"
	fi
	[[ -x "$staging/node_modules/.bin/azurite-table" ]] || die "npm install finished but azurite-table is missing"
	touch "$staging/.installed-$AZURITE_VERSION"
	rm -rf "$pkg_dir"
	mv "$staging" "$pkg_dir"
	# Layout before the staging install (node_modules directly in $dir).
	rm -rf "$dir/node_modules" "$dir/package.json" "$dir/package-lock.json"
}

free_port() {
	node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})'
}

endpoint() { printf 'http://127.0.0.1:%s/devstoreaccount1' "$1"; }

cmd_start() {
	if running; then
		log "already running (pid $(cat "$pid_file"), port $(cat "$port_file"))"
		return 0
	fi
	rm -f "$pid_file" "$port_file"
	install
	mkdir -p "$run_dir"

	local port="${AZURITE_TABLE_PORT:-}"
	if [[ -z "$port" ]]; then
		port=$default_port
		if port_answers "$port"; then
			port="$(free_port)"
			log "port $default_port is taken by another process; using $port"
		fi
	elif port_answers "$port"; then
		die "port $port (AZURITE_TABLE_PORT) is taken by another process"
	fi

	# --skipApiVersionCheck: the Go SDK may send an x-ms-version newer than
	# this Azurite knows. --loose: ignore unsupported headers. In memory: no
	# files to clean, a fresh store per start. setsid + nohup: survive the
	# calling shell (make) and never read stdin.
	# Run from run_dir: Azurite may write its workspace files into the cwd.
	(cd "$run_dir" && exec setsid nohup "$bin" \
		--inMemoryPersistence \
		--tableHost 127.0.0.1 --tablePort "$port" \
		--skipApiVersionCheck --loose --disableTelemetry \
		</dev/null >"$log_file" 2>&1 9>&-) &
	local pid=$!
	echo "$pid" >"$pid_file"
	echo "$port" >"$port_file"

	local waited=0
	until port_answers "$port"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "azurite exited during start-up; its log ($log_file):"
			tail -n 40 "$log_file" >&2 || true
			rm -f "$pid_file" "$port_file"
			exit 1
		fi
		if ((waited >= start_timeout * 10)); then
			log "azurite did not answer on 127.0.0.1:$port within ${start_timeout}s; log:"
			tail -n 40 "$log_file" >&2 || true
			cmd_stop
			exit 1
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	log "started azurite-table $AZURITE_VERSION (pid $pid) at $(endpoint "$port")"
}

cmd_stop() {
	if ! running; then
		rm -f "$pid_file" "$port_file"
		log "not running"
		return 0
	fi
	local pid i
	pid="$(cat "$pid_file")"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pid_file" "$port_file"
	log "stopped (pid $pid)"
}

cmd_env() {
	running || die "not running; run: scripts/azurite.sh start"
	printf 'export AZURITE_TABLE_ENDPOINT=%s\n' "$(endpoint "$(cat "$port_file")")"
}

cmd_status() {
	if running; then
		endpoint "$(cat "$port_file")"
		echo
		return 0
	fi
	log "not running"
	return 1
}

# lock: serialise start/stop of concurrent callers (e.g. parallel make jobs).
lock() {
	mkdir -p "$dir"
	if command -v flock >/dev/null; then
		exec 9>"$dir/.lock"
		flock -w 120 9 || die "another azurite.sh holds $dir/.lock"
	fi
}

case "${1:-}" in
start)
	lock
	cmd_start
	;;
stop)
	lock
	cmd_stop
	;;
env) cmd_env ;;
status) cmd_status ;;
*)
	echo "usage: $0 start|stop|env|status" >&2
	exit 2
	;;
esac
