"""Shell text that runs on the pod, and the mapping of pod paths onto a root.

Pure functions, shared by every backend:
- `launcher_script`: starts the job in its own process group, writes its
  log (the job writes into a pipe, stdout and stderr interleaved, that a `cat` empties into it), its
  exit code (atomically, at the end, once the log is whole) and,
  when a watchdog ends the job, why. The watchdog lives in the launcher, on
  the pod, so a dead client cannot leave a job running past its runtime cap or heartbeat limit; it has a
  process group of its own and is ended when the job ends.
- `kill_command`: ends the job's process group, then waits for the launcher
  to finish (its end capture, its exit file), KILLing it past a limit.
- `launch_files`: every file a launch puts on the pod: the job's script, the
  launcher and, with telemetry (`Launch.telemetry`), the sampler. The
  launcher holds the start and end captures as functions: it runs the start
  capture before the job, starts the sampler beside it and, when the job has
  ended, stops the sampler (it takes one last sample) while it runs the end capture
  before it writes the exit file; each capture's output
  (`<control>.telemetry_start`/`_end`) ends with `CAPTURE_DONE` once whole:
  a run with telemetry costs no command of its own. It exports
  `PODMAGIC_METRICS`, the file a job appends its own JSON-line metrics to.
- `PathMap`: a pod that is not a real RunPod pod (an SSH host with a root,
  the local sandbox's mapped fallback) maps the pod paths it owns,
  `/workspace/...` and `/root/...` (its `$HOME`), onto `<root>/workspace/...`
  and `<root>/root/...`; in command text only the mount is rewritten (`$HOME`
  already points at `<root>/root`). The plan refuses other pod paths there.
"""

from __future__ import annotations

import re
import shlex

from podmagic.backends.base import BackendError, Launch
from podmagic.records import record, replace

q = shlex.quote
HOME = "/root"
"""The pod's home on a real pod; `PathMap` puts it at `<root>/root`, which is its `home`."""
PLAIN_PATH = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
"""What `shlex.quote` leaves alone: a root that `text` may paste into shell text unquoted."""


@record
class PathMap:
    """Maps pod paths under `mount` onto `root` (no mapping when root is None)."""

    root: str | None = None
    mount: str = "/workspace"

    def __post_init__(self) -> None:
        if self.root is not None and not PLAIN_PATH.fullmatch(self.root):
            raise BackendError(
                f"the pod root {self.root!r} has spaces or shell characters: pod paths such as "
                f"{self.mount}/... are rewritten inside commands, where it would not stay one word; use a "
                "plain path (letters, digits, _@%+=:,./-) for PODMAGIC_LOCAL_ROOT or the ssh pod root")

    @property
    def home(self) -> str | None:
        return None if self.root is None else f"{self.root}/root"

    def path(self, pod_path: str) -> str:
        """The host path of a pod path: the mount and the pod's home (`/root`) live under the root."""
        if self.root is None:
            return pod_path
        for owned in (self.mount.rstrip("/"), HOME):
            if pod_path == owned or pod_path.startswith(owned + "/"):
                return self.root + pod_path
        return pod_path

    def text(self, text: str) -> str:
        """Rewrite occurrences of the mount inside shell text (commands, bodies)."""
        if self.root is None:
            return text
        pattern = r"(?<![\w./-])" + re.escape(self.mount.rstrip("/")) + r"(?=[/\s'\"`;:)|&}]|$)"
        return re.sub(pattern, lambda _m: self.root + self.mount.rstrip("/"), text)

    def launch(self, launch: Launch) -> Launch:
        """The launch with every pod path in it mapped onto the host."""
        if self.root is None:
            return launch
        p = self.path
        t = launch.telemetry
        return replace(launch, script_path=p(launch.script_path), log_path=p(launch.log_path),
                       exit_path=p(launch.exit_path), workdir=p(launch.workdir) if launch.workdir else "",
                       heartbeat_path=p(launch.heartbeat_path) if launch.heartbeat_path else None,
                       body=self.text(launch.body), env={k: self.text(v) for k, v in launch.env.items()},
                       telemetry=replace(t, mount=p(t.mount)) if t else None)


def launch_files(launch: Launch, exports: dict[str, str] | None = None) -> dict[str, str]:
    """Pod path → text of every file the launch needs (all written executable, 0700, before it starts)."""
    c = launch.control_prefix
    files = {launch.script_path: launch.body, launcher_path(c): launcher_script(launch, exports)}
    t = launch.telemetry
    if t is not None:
        files[sampler_path(c)] = sampler_script(
            samples_path(c), interval_sec=t.sample_interval_sec, mount=t.mount, query=SAMPLE_QUERIES,
            max_samples=t.max_samples, heartbeat_path=launch.heartbeat_path,
            heartbeat_timeout_sec=launch.heartbeat_timeout_sec)
    return files


def launcher_path(exit_path: str) -> str:
    return exit_path + ".launcher.sh"


def launcher_script(launch: Launch, exports: dict[str, str] | None = None) -> str:
    """The detached launcher: job in its own group, exit code file, watchdog, telemetry around the job."""
    c = launch.control_prefix
    t = launch.telemetry
    watchdog = _watchdog(launch)
    lines = [
        "#!/usr/bin/env bash",
        "# podmagic launcher (generated): runs the job detached and records its end.",
        f"echo $$ > {q(c + '.launcher_pid')}",
        f"export PODMAGIC_METRICS={q(user_metrics_path(c))}",
        *(f"export {k}={q(v)}" for k, v in (exports or {}).items()),
        *(_captures(t, launch.workdir) + [_capture(c, "start")] if t else []),
        f"cd {q(launch.workdir)} 2>/dev/null || cd \"$HOME\"" if launch.workdir else 'cd "$HOME"',
        # a kill that came while the start capture ran found no job to end: the job then never starts
        f"if [ -f {q(c + '.ended_by')} ]; then rc=143; else",
        # the job writes into a pipe that a `cat` empties into the log: a `write()` to a pipe costs a job
        # that prints line by line much less than an append to a file, and the log gets large writes.
        # The `cat` is outside the job's group (a kill of the job lets it empty the pipe) and holds the
        # write end of a second pipe, whose end tells the launcher that the log is whole (`_log_whole`)
        f": > {q(launch.log_path)}",
        # (on a full disk the `cat` fails: the job's output then goes to /dev/null, the job is not killed)
        f"coproc _pm_log {{ exec 3>&1 >> {q(launch.log_path)}; cat 2>/dev/null || exec cat > /dev/null; }}",
        # a coproc's own descriptors are closed in subshells (the job is one): copies of them are not
        'exec {_pm_logw}>&"${_pm_log[1]}" {_pm_logr}<&"${_pm_log[0]}"; '
        'eval "exec ${_pm_log[1]}>&- ${_pm_log[0]}<&-"',
        "set -m  # job control: the job gets a process group of its own",
        # the job's pid is written by its own process before the job's first instruction: a job that kills
        # the launcher at once (as the out-of-memory killer might) can still be ended by `kill_command`
        f"{{ echo $BASHPID > {q(c + '.pid')}; exec bash {q(launch.script_path)}; }} >&$_pm_logw 2>&1 < /dev/null "
        "{_pm_logw}>&- {_pm_logr}<&- &",
        "job=$!",
        "exec {_pm_logw}>&-  # the job holds the pipe's only write end: its end is the `cat`'s",
        # ... and one that came between that look and the pid's write is carried out here
        f"[ -f {q(c + '.ended_by')} ] && kill -TERM -- -$job 2>/dev/null",
        # after the job (its fork does not delay the job's start), before the watchdog and the sampler use it
        *([NAP_FUNCTION] if t or watchdog else []),
        *watchdog,
        "set +m",
        *(_sampler_start(c) if t else []),
        "wait $job",
        "rc=$?",
        # a watchdog that fired (it wrote .ended_by) still has its after-command to run (e.g. terminate the pod)
        *([f"[ -f {q(c + '.ended_by')} ] || kill -TERM -- -$watchdog 2>/dev/null"] if watchdog else []),
        "fi",
        # the end capture comes first: once the exit code is there, so is everything the launcher writes
        *(["kill -TERM $sampler 2>/dev/null", _capture(c, "end"), _sampler_gone()]
          if t else []),  # the sampler takes its last sample (TERM) while the end capture runs
        _log_whole(),
        # one write of a few bytes, no `mv` (a fork and an exec on the job's end path): the readers take
        # an empty file for "not yet" (`exit_wait_command` waits for a non-empty one)
        f"echo $rc > {q(c)}",
    ]
    return "\n".join(lines) + "\n"


LOG_DRAIN_SEC = 1
"""How long the launcher waits, once the job has ended, for the `cat` to empty the log's pipe: longer only when
a process the job left behind holds the job's output (a server started with `&`). The `cat` then goes on
appending what it writes; the exit file does not wait for it."""


def _log_whole() -> str:
    """Wait for the log's `cat` to end: `read` returns at once when its end closes the pipe it alone holds."""
    return f'[ -z "$_pm_logr" ] || read -rt {LOG_DRAIN_SEC} -u $_pm_logr'


def _watchdog(launch: Launch) -> list[str]:
    if not (launch.max_runtime_sec or (launch.heartbeat_path and launch.heartbeat_timeout_sec)):
        return []
    c = launch.control_prefix
    checks = []
    if launch.max_runtime_sec:
        checks.append(
            f'    if [ $(( now - start )) -ge {int(launch.max_runtime_sec)} ]; then why=watchdog:max_runtime; fi'
        )
    if launch.heartbeat_path and launch.heartbeat_timeout_sec:
        hb = q(launch.heartbeat_path)
        checks.append(
            f"    if [ -f {hb} ] && [ $(( now - $(stat -c %Y {hb}) )) -ge "
            f"{int(launch.heartbeat_timeout_sec)} ]; then why=watchdog:heartbeat; fi"
        )
    after = [f"    {launch.watchdog_command}"] if launch.watchdog_command else []
    return [
        "(",
        "  printf -v start '%(%s)T' -1",
        "  while kill -0 $job 2>/dev/null; do",
        f"    _pm_nap {launch.watchdog_interval_sec:g}",
        "    printf -v now '%(%s)T' -1; why=",
        *checks,
        '    if [ -n "$why" ]; then',
        f"      echo $why > {q(c + '.ended_by')}",
        "      kill -TERM -- -$job 2>/dev/null; sleep 2; kill -KILL -- -$job 2>/dev/null",
        *after,
        "      break",
        "    fi",
        "  done",
        ") < /dev/null > /dev/null 2>&1 &",
        "watchdog=$!  # a process group of its own (set -m): ended with everything in it when the job ends",
    ]


SECTION = "@@podmagic-telemetry:"
"""Starts each named section of a capture's output (`run.telemetry.sections` splits them)."""
GPU_QUERY = "index,name,memory.total,driver_version"
GPU_QUERIES = (GPU_QUERY, "name,memory.total,driver_version", "name")
SAMPLE_QUERY = "utilization.gpu,memory.used,memory.total,temperature.gpu,ecc.errors.uncorrected.volatile.total"
SAMPLE_QUERIES = (SAMPLE_QUERY, "utilization.gpu,memory.used,memory.total", "utilization.gpu")
"""Tried in order: an nvidia-smi that does not know one field refuses the whole query."""
CAPTURE_TIMEOUT_SEC = 120
"""A capture that hangs (a wedged GPU's nvidia-smi) is ended after this; the job starts regardless."""
DMESG_LINES = 200
_HOME = '"$HOME"'


def sampler_path(exit_path: str) -> str:
    return exit_path + ".sampler.sh"


def samples_path(exit_path: str) -> str:
    return exit_path + ".samples"


def user_metrics_path(exit_path: str) -> str:
    return exit_path + ".metrics.jsonl"


def capture_output_path(exit_path: str, moment: str) -> str:
    """Where the launcher writes a capture's output; it is whole once `CAPTURE_DONE` ends it."""
    return f"{exit_path}.telemetry_{moment}"


CAPTURE_DONE = SECTION + "done@@"


def _captures(t, workdir: str) -> list[str]:
    """The two captures as launcher functions, run by the launcher itself (no fork): what they set is
    local to them (`PATH` too). Each command that can hang (nvidia-smi, the interpreters) runs under
    `timeout` where the pod has it."""
    # a name no job exports: the launcher's variables before the job starts are in the job's environment
    scope = 'local -x PATH="$PATH"; local gq= o= f='
    return [f"_podmagic_to=; command -v timeout >/dev/null 2>&1 && _podmagic_to='timeout -k 5 {CAPTURE_TIMEOUT_SEC}'",
            "capture_start() {", scope, capture_start_script(t, workdir).rstrip("\n"), "}",
            "capture_end() {", scope, capture_end_script(t).rstrip("\n"), "}"]


def _capture(c: str, moment: str) -> str:
    return f"{{ capture_{moment} < /dev/null; printf '\\n%s\\n' {q(CAPTURE_DONE)}; }} > " \
           f"{q(capture_output_path(c, moment))} 2>&1"


def _section(name: str) -> str:
    return f"printf '\\n{SECTION}%s@@\\n' {q(name)}"


def capture_start_script(t, workdir: str) -> str:
    """The start capture (sections of output): nvidia-smi's table, list and GPU query, and the pod environment.
    Shell text for a function or `bash -c`; `$_podmagic_to` (the launcher's `timeout`, else empty) limits what can hang."""
    parts = ['export PATH="$HOME/.local/bin:$PATH"']
    if t.nvidia_smi:
        parts += ["if command -v nvidia-smi >/dev/null 2>&1; then",
                  _section("nvidia_smi"), "$_podmagic_to nvidia-smi 2>&1",
                  _section("gpu_list"), "$_podmagic_to nvidia-smi -L 2>&1",
                  "gq=",
                  *(f"if [ -z \"$gq\" ] && o=$($_podmagic_to nvidia-smi --query-gpu={f} --format=csv,noheader,nounits "
                    "2>/dev/null); "
                    f"then gq={f}; {_section('gpu_fields')}; echo {f}; {_section('gpu_query')}; echo \"$o\"; fi"
                    for f in GPU_QUERIES),
                  "fi"]
    if t.remote_env:
        parts += [_section("uname"), "uname -a 2>&1",
                  _section("python3"),
                  "$_podmagic_to python3 -c 'import platform, sys; print(platform.python_version(), sys.executable)' "
                  "2>/dev/null",
                  _section("uv"), "$_podmagic_to uv --version 2>/dev/null",
                  _section("freeze"),
                  f"if f=$(cd {q(workdir) if workdir else _HOME} && $_podmagic_to uv pip freeze 2>/dev/null) && [ -n \"$f\" ]; "
                  "then printf '%s\\n' \"$f\"; echo '#podmagic:uv pip freeze'; "
                  "elif $_podmagic_to python3 -m pip freeze 2>/dev/null; then echo '#podmagic:pip freeze'; fi"]
    return "\n".join(parts + ["true"]) + "\n"


def capture_end_script(t) -> str:
    """The end capture: nvidia-smi's table and the dmesg tail (where readable)."""
    parts = ['export PATH="$HOME/.local/bin:$PATH"']
    if t.nvidia_smi:
        parts += ["if command -v nvidia-smi >/dev/null 2>&1; then", _section("nvidia_smi"), "$_podmagic_to nvidia-smi 2>&1",
                  "fi"]
    if t.dmesg:
        # `tail`, not bash's mapfile: mapfile reads a pipe a byte at a time (20 ms of CPU here, against 8)
        parts += [_section("dmesg"), f"dmesg 2>/dev/null | tail -n {DMESG_LINES}"]
    return "\n".join(parts + ["true"]) + "\n"


def end_capture_command(exit_path: str, t) -> str:
    """The end capture run as a command of its own, when the launcher could not (it was ended first):
    the sampler is stopped if it still runs, then the capture."""
    return sampler_stop_command(exit_path) + "\n" + capture_end_script(t)


def _sampler_start(c: str) -> list[str]:
    """Sourced in a subshell: a fork of the launcher, no new bash to start. It starts with TERM ignored
    (the launcher's own disposition for that instant): a TERM that comes before the sampler's trap is
    set (a job that ends at once, on a loaded pod) must not end it without its sample; `_sampler_gone`
    sends TERM again until the trap takes it."""
    return ["trap '' TERM",
            f"( . {q(sampler_path(c))} ) < /dev/null > /dev/null 2>&1 & sampler=$!",
            "trap - TERM",
            f"echo $sampler > {q(c + '.sampler_pid')}"]


def _sampler_gone(limit_sec: float = 5.0) -> str:
    """Wait for the TERMed sampler, sending TERM again at each look, KILL after `limit_sec`: a TERM that
    reaches the subshell before its trap is set is ignored (`_sampler_start`), and the exit file must
    never wait on it. Costs nothing when it is gone; looks every 5 ms at first (the job's end waits on
    it), with the launcher's fork-free `_pm_nap`."""
    return (f'if [ -n "$sampler" ]; then '
            f'{_until_gone("$sampler", limit_sec, each="kill -TERM $sampler 2>/dev/null", nap="_pm_nap")}; '
            "kill -KILL $sampler 2>/dev/null; wait $sampler 2>/dev/null; fi")


ALIVE_FUNCTION = ("_pm_alive() { local k= v=; kill -0 \"$1\" 2>/dev/null || return 1; [ -e \"/proc/$1\" ] || return 0; "
                  "while read -r k v _; do [ \"$k\" = State: ] && break; done < \"/proc/$1/status\" 2>/dev/null; "
                  "[ \"$v\" != Z ] && kill -0 \"$1\" 2>/dev/null; }")
"""Whether a process is there and not a zombie, by bash builtins alone (no `grep` per look). A zombie
counts as gone: an orphan is reaped by the pod's init, which may take its time (`kill -0` still succeeds
on it); with no /proc, `kill -0` alone decides."""
NAP_FUNCTION = ("exec {_pm_nap_fd}<> <(:)  # a pipe no one writes: `read -t` on it sleeps without a fork\n"
                "_pm_nap() { read -rt \"$1\" -u $_pm_nap_fd; }")
"""A sub-second sleep that starts no process: defined once by the launcher, just after the job's fork, for
its own waits on the job's end path, the watchdog's looks and the sampler's intervals."""


def _until_gone(pid: str, limit_sec: float, each: str = "", nap: str = "") -> str:
    """Wait for `pid` to end (`_pm_alive`, defined here), at most about `limit_sec`; `each` runs at every look
    while it is there. No process is started when it is already gone. With `nap` (the launcher's
    `_pm_nap`) it looks every 1 ms for the first 20 ms (a sampler's last sample takes a few: the job's end
    waits on it), every 5 ms to 0.2 s, then every 50 ms; without, `sleep 0.05` each time."""
    looks, wait = max(1, int(limit_sec / 0.05)), "sleep 0.05"
    if nap:  # 20 looks of 1 ms and 36 of 5 ms: 0.2 s, the time of 4 looks of 50 ms
        looks = looks - 4 + 20 + 36
        wait = f"if [ $n -lt 20 ]; then {nap} 0.001; elif [ $n -lt 56 ]; then {nap} 0.005; else {nap} 0.05; fi"
    return (f"{ALIVE_FUNCTION}; n=0; while [ $n -lt {looks} ] && _pm_alive {pid}; do {each + '; ' if each else ''}"
            f"{wait}; n=$((n + 1)); done")


FIRST_SAMPLE_SEC = 0.05


def sampler_script(out_path: str, *, interval_sec: float, mount: str, query: str | tuple[str, ...], max_samples: int,
                   heartbeat_path: str | None = None, heartbeat_timeout_sec: float | None = None) -> str:
    """The pod-side sampler: one tab-separated line per sample (parsed by `run.telemetry.parse_sample`).

    One process on the pod, no new connection per sample, and no process per reading but `df` (and
    `nvidia-smi` where there is one): the clock, /proc/loadavg, the first line of /proc/stat and
    MemTotal/MemAvailable are read by bash itself. It samples `FIRST_SAMPLE_SEC` after the start (the
    sampler is forked just after the job, whose start its `df` would slow on a small pod), then every
    `interval_sec`, and once more on TERM (so a shorter job still gets one sample); it ends by itself
    after `max_samples`, when the client's heartbeat is older than `heartbeat_timeout_sec`, or when the
    launcher that sourced it is gone (killed: it will never send the TERM). `query`
    may list field sets to try in order (an nvidia-smi that refuses a field refuses the whole query);
    the one that works is written in each line (`gpuf=`).
    """
    queries = (query,) if isinstance(query, str) else tuple(query)
    pick = "; ".join(f"[ -z \"$gq\" ] && nvidia-smi --query-gpu={x} --format=csv,noheader,nounits >/dev/null 2>&1 "
                     f"&& gq={x}" for x in queries)
    stale = ""
    if heartbeat_path and heartbeat_timeout_sec:
        hb = q(heartbeat_path)
        stale = (f"  printf -v now '%(%s)T' -1\n"
                 f"  if [ -f {hb} ] && [ $(( now - $(stat -c %Y {hb} 2>/dev/null || echo $now) )) -ge "
                 f"{int(heartbeat_timeout_sec)} ]; then exit 0; fi\n")
    return (
        "#!/usr/bin/env bash\n"
        "# podmagic telemetry sampler (generated)\n"
        'export PATH="$HOME/.local/bin:$PATH"\n'
        f"out={q(out_path)}\n"
        "to=; command -v timeout >/dev/null 2>&1 && to='timeout -k 1 10'\n"
        "smi=0; gq=; command -v nvidia-smi >/dev/null 2>&1 && smi=1\n"
        f"if [ $smi = 1 ]; then {pick}; [ -n \"$gq\" ] || smi=0; fi\n"
        "sample() {\n"
        "  local gpu=- load= cpu= mem= disk= ts k v t= a= d\n"
        "  if [ $smi = 1 ]; then gpu=$($to nvidia-smi --query-gpu=$gq --format=csv,noheader,nounits 2>/dev/null "
        "| tr '\\n' ';'); fi\n"
        "  read -r load _ < /proc/loadavg 2>/dev/null\n"
        "  read -r cpu < /proc/stat 2>/dev/null\n"
        "  while read -r k v _; do case $k in MemTotal:) t=$v;; MemAvailable:) a=$v; break;; esac; done "
        "< /proc/meminfo 2>/dev/null\n"
        '  [ -n "$t" ] && mem="$t $a"\n'
        f"  d=$(df -P -B1 {q(mount)} 2>/dev/null) && read -r _ k v _ <<< \"${{d##*$'\\n'}}\" && disk=\"$v $k\"\n"
        "  TZ=UTC0 printf -v ts '%(%Y-%m-%dT%H:%M:%SZ)T' -1\n"
        "  printf 'ts=%s\\tgpuf=%s\\tgpu=%s\\tload=%s\\tcpu=%s\\tmem=%s\\tdisk=%s\\n' "
        '"$ts" "$gq" "$gpu" "$load" "$cpu" "$mem" "$disk" >> "$out"\n'
        "}\n"
        "trap 'trap \"\" TERM; sample; exit 0' TERM  # once: it cuts a pending nap short\n"
        "i=0\n"
        f"declare -F _pm_nap > /dev/null || {{\n{NAP_FUNCTION}\n}}  # the launcher's, or its own when run alone\n"
        f"_pm_nap {FIRST_SAMPLE_SEC:g}\n"
        f"while [ $i -lt {int(max_samples)} ]; do\n"
        "  sample; i=$((i + 1))\n"
        f"  [ $i -lt {int(max_samples)} ] || break\n"
        f"{_nap_while_launcher(interval_sec)}"
        f"{stale}"
        "done\n"
    )


LAUNCHER_LOOK_SEC = 5
"""How often a napping sampler looks whether its launcher is still there."""


def _nap_while_launcher(interval_sec: float) -> str:
    """The sampler's nap between samples, in slices of `LAUNCHER_LOOK_SEC`: sourced by the launcher, `$$`
    is the launcher, and one killed before its end (it never sends the TERM) must not leave the sampler
    behind for hours. Run alone, `$$` is the sampler itself and the look is moot."""
    slices, rest = int(interval_sec // LAUNCHER_LOOK_SEC), interval_sec % LAUNCHER_LOOK_SEC
    looks = (f"  k=0; while [ $k -lt {slices} ]; do _pm_nap {LAUNCHER_LOOK_SEC}; kill -0 $$ 2>/dev/null || exit 0; "
             f"k=$((k + 1)); done\n") if slices else ""
    return looks + (f"  _pm_nap {rest:g}\n" if rest else "")


def sampler_stop_command(exit_path: str) -> str:
    """Stop a sampler still running and wait (at most 5 s) for its last sample: the end capture reads it next."""
    pid = q(exit_path + ".sampler_pid")
    return (f"p=$(cat {pid} 2>/dev/null); if [ -n \"$p\" ] && kill -TERM $p 2>/dev/null; then "
            f"{_until_gone('$p', 5.0)}; fi; true")


def start_command(launcher_path: str) -> str:
    """Start the launcher detached from the calling session; prints its pid."""
    return f"setsid nohup bash {q(launcher_path)} > /dev/null 2>&1 < /dev/null & echo $!"


def kill_command(launch: Launch, grace_sec: float = 2.0, launcher_sec: float = 10.0) -> str:
    """End the job's process group (TERM, then KILL after `grace_sec`), then wait for the launcher to finish.

    When it returns, the launcher writes nothing more (its end capture and exit file are there, or it was
    KILLed after `launcher_sec`), so a teardown that reads or removes the pod's files races nothing (but
    for the last sample of a sampler whose launcher was killed before: it is TERMed last). A kill
    before the job's pid exists is carried out by the launcher, which looks for `.ended_by` around the start.
    """
    c = launch.control_prefix
    job, launcher = f"$(cat {q(c + '.pid')} 2>/dev/null)", f"$(cat {q(c + '.launcher_pid')} 2>/dev/null)"
    return (
        f"echo interrupted > {q(c + '.ended_by')}; job={job}; "
        f"if [ -n \"$job\" ]; then kill -TERM -- -$job 2>/dev/null; {_until_gone('$job', grace_sec)}; "
        f"kill -KILL -- -$job 2>/dev/null; fi; "
        f"l={launcher}; if [ -n \"$l\" ]; then {_until_gone('$l', launcher_sec)}; fi; "
        # a job that started after the first look: the launcher has TERMed it; this ends what lingers
        f"job={job}; [ -n \"$job\" ] && kill -KILL -- -$job 2>/dev/null; "
        f"[ -n \"$l\" ] && _pm_alive $l && kill -KILL -- -$l 2>/dev/null; "
        # a launcher killed before its end left its sampler running: TERMed, it takes its last sample and ends
        f"s=$(cat {q(c + '.sampler_pid')} 2>/dev/null); [ -n \"$s\" ] && kill -TERM $s 2>/dev/null; true"
    )


LAUNCHER_LOST_STATUS = 3
"""`exit_wait_command`'s exit status when the launcher is gone and left no exit file."""
LAUNCHER_LOST = ("the pod's launcher ended without recording the job's exit code (it was killed, e.g. by the "
                 "out-of-memory killer, or the pod's disk is full); the job was ended and its log so far kept")
"""The run's error when a backend sees that (`Pod.wait_exit` raises it): the job's end can no longer be known,
so the runner stops waiting at once instead of until its time budget."""


def exit_wait_command(launch: Launch) -> str:
    """Ends when the job's exit file holds its code (is not empty), or (looked at every 2 s) the launcher
    is gone or left no pid (a full disk, a removed folder: it would wait forever on the host, the client
    long gone), then with `LAUNCHER_LOST_STATUS` unless the code is there: one channel waits on it
    instead of the client polling.
    Looks every 50 ms; cheap on the pod (no new connection, one `sleep` per look)."""
    c = q(launch.control_prefix)
    pid = q(launch.control_prefix + ".launcher_pid")
    return (f"n=0; until [ -s {c} ]; do sleep 0.05; n=$((n + 1)); if [ $((n % 40)) = 0 ]; then "
            f"p=$(cat {pid} 2>/dev/null); {{ [ -z \"$p\" ] || ! kill -0 $p 2>/dev/null; }} && break; fi; done; "
            f"[ -s {c} ] || exit {LAUNCHER_LOST_STATUS}")


def touch_command(path: str) -> str:
    return f"touch {q(path)}"
