"""A fake `nvidia-smi` for a machine with no GPU, held to NVIDIA's documented output formats.

`script()` returns a standalone Python program (put it on the pod's PATH as
`nvidia-smi`, e.g. `~/.local/bin`, with `install_command()` as a preflight
step). It answers:

- `--query-gpu=F1,F2,... --format=csv[,noheader][,nounits]`: a header line
  `F1 [unit], F2` (units dropped under `nounits`, the header under
  `noheader`), then one line per GPU, values joined by ", ", units after a
  space (`81559 MiB`, `45 %`, `69.52 W`), `[N/A]` for what the GPU does not
  report; an unknown field prints `Field "x" is not a valid field to query.`
  and exits 2, as the real one does;
- `-L` / `--list-gpus`: `GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)`;
- no arguments: the summary table (driver and CUDA version in its header).

Utilisation and memory follow the clock (a slow wave), so consecutive samples
differ. Imports only the standard library; the program it writes does too.
"""

from __future__ import annotations

import shlex

DEFAULTS = {"name": "NVIDIA H100 80GB HBM3", "count": 1, "memory_mib": 81559, "driver": "550.54.15",
            "cuda": "12.4", "power_limit_w": 700}

_PROGRAM = r'''#!/usr/bin/env python3
"""Fake nvidia-smi (podmagic.testing.fake_nvidia_smi)."""
import math, sys, time

CONF = __CONF__
UNITS = {"memory.total": "MiB", "memory.used": "MiB", "memory.free": "MiB", "utilization.gpu": "%",
         "utilization.memory": "%", "power.draw": "W", "power.limit": "W", "clocks.sm": "MHz",
         "fan.speed": "%"}


def gpu(i):
    t = time.time()
    util = int(50 + 45 * math.sin(t / 7.0 + i))
    used = int(CONF["memory_mib"] * (0.30 + 0.25 * (1 + math.sin(t / 11.0 + i)) / 2))
    return {
        "index": str(i), "name": CONF["name"], "gpu_name": CONF["name"],
        "uuid": "GPU-%08x-1111-2222-3333-%012x" % (0x5eed0000 + i, 0xabc000 + i),
        "driver_version": CONF["driver"], "count": str(CONF["count"]),
        "pci.bus_id": "00000000:%02X:00.0" % (0x18 + i), "serial": "[N/A]",
        "memory.total": str(CONF["memory_mib"]), "memory.used": str(used),
        "memory.free": str(CONF["memory_mib"] - used), "utilization.gpu": str(util),
        "utilization.memory": str(max(util - 10, 0)), "temperature.gpu": str(34 + util // 5),
        "power.draw": "%.2f" % (60 + util * 5.3), "power.limit": "%.2f" % CONF["power_limit_w"],
        "ecc.errors.uncorrected.volatile.total": "0", "clocks.sm": str(1980),
        "fan.speed": "[N/A]", "pstate": "P0", "persistence_mode": "Enabled",
        "compute_mode": "Default",
    }


def query(fields, fmt):
    opts = fmt.split(",")
    if opts[0] != "csv":
        sys.stderr.write('"%s" is not a valid format.\n' % fmt)
        return 2
    names = [f.strip() for f in fields.split(",") if f.strip()]
    for n in names:
        if n not in gpu(0):
            print('Field "%s" is not a valid field to query.' % n)
            print()
            return 2
    nounits = "nounits" in opts
    if "noheader" not in opts:
        print(", ".join(n if nounits or n not in UNITS else "%s [%s]" % (n, UNITS[n]) for n in names))
    for i in range(CONF["count"]):
        g = gpu(i)
        cells = []
        for n in names:
            v = g[n]
            if not nounits and n in UNITS and not v.startswith("["):
                v = "%s %s" % (v, UNITS[n])
            cells.append(v)
        print(", ".join(cells))
    return 0


def table():
    print(time.strftime("%a %b %d %H:%M:%S %Y"))
    bar = "+-----------------------------------------+------------------------+----------------------+"
    print("+-----------------------------------------------------------------------------------------+")
    head = "NVIDIA-SMI %s              Driver Version: %s      CUDA Version: %s" % (
        CONF["driver"], CONF["driver"], CONF["cuda"])
    print("| %-87s |" % head)
    print("|-----------------------------------------+------------------------+----------------------+")
    print("| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |")
    print("| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |")
    print("|                                         |                        |               MIG M. |")
    print("|=========================================+========================+======================|")
    for i in range(CONF["count"]):
        g = gpu(i)
        print("| %3d  %-29s  On  | %18s Off | %20s |" % (i, g["name"][:29], g["pci.bus_id"], "0"))
        power = "%3dW / %4dW" % (float(g["power.draw"]), CONF["power_limit_w"])
        memory = "%6sMiB / %6sMiB" % (g["memory.used"], g["memory.total"])
        print("| N/A   %3sC    P0        %15s | %22s | %6s%%      Default |" % (
            g["temperature.gpu"], power, memory, g["utilization.gpu"]))
        print("|                                         |                        |             Disabled |")
        print(bar)
    print("                                                                                         ")
    print("+-----------------------------------------------------------------------------------------+")
    print("| Processes:                                                                              |")
    print("|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |")
    print("|        ID   ID                                                               Usage      |")
    print("|=========================================================================================|")
    print("|  No running processes found                                                             |")
    print("+-----------------------------------------------------------------------------------------+")
    return 0


def main(argv):
    fields = fmt = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-L", "--list-gpus"):
            for n in range(CONF["count"]):
                g = gpu(n)
                print("GPU %d: %s (UUID: %s)" % (n, g["name"], g["uuid"]))
            return 0
        if a.startswith("--query-gpu="):
            fields = a.split("=", 1)[1]
        elif a == "--query-gpu" and i + 1 < len(argv):
            i += 1
            fields = argv[i]
        elif a.startswith("--format="):
            fmt = a.split("=", 1)[1]
        elif a == "--format" and i + 1 < len(argv):
            i += 1
            fmt = argv[i]
        elif a in ("-h", "--help"):
            print("NVIDIA System Management Interface -- v%s (fake)" % CONF["driver"])
            return 0
        else:
            print("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
            return 2
        i += 1
    if fields is not None:
        if fmt is None:
            print('Option "--query-gpu" must be used with "--format".')
            return 2
        return query(fields, fmt)
    return table()


sys.exit(main(sys.argv[1:]))
'''


def script(**overrides) -> str:
    """The fake's program text; `overrides` change DEFAULTS (name, count, memory_mib, driver, cuda)."""
    conf = {**DEFAULTS, **overrides}
    return _PROGRAM.replace("__CONF__", repr(conf))


def install_command(directory: str = "$HOME/.local/bin", **overrides) -> str:
    """A shell command (for `preflight:`) that installs the fake as `<directory>/nvidia-smi`."""
    target = f'"{directory}"' if directory.startswith("$HOME") else shlex.quote(directory)
    return (f"mkdir -p {target} && cat > {target}/nvidia-smi <<'PODMAGIC_FAKE_SMI'\n{script(**overrides)}"
            f"PODMAGIC_FAKE_SMI\nchmod +x {target}/nvidia-smi")
