"""When int8 pays: float and int8 tokens per second against batch size, for every quantized engine torch offers.

The int8 model is the tutorial's (``quantize(model, PRESETS["tutorial"])``: LSTM and decoder int8, embedding
float), quantized afresh under each engine (``wlm.qengine.quantized_engine``: packed weights are the engine's own)
and timed under it. Every measurement reads the same first test tokens, batchified as the tutorial batchifies
(``wlm.corpus.batchify``: ``batch`` parallel streams), forward only, in chunks of ``bptt`` steps with the hidden
state carried, as ``wlm.evaluate.chunks`` walks them; tokens per second counts the positions read, steps × batch.
Float and int8 take turns chunk by chunk, and each part (embedding, LSTM, decoder) is timed on its own in the same
walk. ``CpuInfo`` names the CPU and the instruction sets that decide which kernels run, and ``notes`` says from
the numbers where int8 stops paying and why.
"""
from __future__ import annotations

import math
import numbers
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import torch
from torch import nn

from .corpus import batchify, get_batch
from .errors import WlmError
from .evaluate import BPTT, limit_tokens
from .model import PART_NAMES
from .qengine import current_engine, parse_engines, quantized_engine
from .quantize import PRESETS, quantize
from .threads import in_words, num_threads

DEFAULT_BATCHES = (1, 4, 16, 64)
DEFAULT_TOKENS = 2_000
PAYS = 1.1  # int8 "pays" from 1.1× float: a shared machine's timings move by several percent from run to run
COLUMNS = ["engine", "batch", "float_tokens_per_s", "int8_tokens_per_s", "speedup"]
PART_COLUMNS = ["engine", "batch", "model", "part", "seconds", "us_per_token"]
MODELS = ("float", "int8")
# The plain names columns are shown under (the CLI's markdown, the app's axes); the data keeps its code names.
SPEEDUP_NAMES = {"engine": "engine", "batch": "batch", "float_tokens_per_s": "float tokens/s",
                 "int8_tokens_per_s": "int8 tokens/s", "speedup": "speedup", "model": "model", "part": "part",
                 "seconds": "seconds", "us_per_token": "µs per token"}

Progress = Callable[[str, int, int], None]  # (what is being measured, measurements done, measurements in all)


# --- the CPU --------------------------------------------------------------------------------------------------

# (name shown, /proc/cpuinfo flag): the instruction sets that decide which int8 kernels a CPU runs
X86_SETS = (("AVX2", "avx2"), ("AVX-512F", "avx512f"), ("AVX-512 VNNI", "avx512_vnni"), ("AMX", "amx_tile"))
ARM_SETS = (("NEON", "asimd"), ("dot product", "asimddp"), ("SVE", "sve"))


@dataclass(frozen=True)
class CpuInfo:
    """A CPU's name, its flags as the kernel lists them, and the vector code torch's own kernels chose."""

    name: str
    flags: frozenset = frozenset()
    capability: str = ""  # torch.backends.cpu.get_cpu_capability(), e.g. "AVX512"
    arm: bool = False

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def instruction_sets(self) -> dict[str, bool]:
        """{name: present} for the sets that matter to int8 kernels on this kind of CPU."""
        return {label: self.has(flag) for label, flag in (ARM_SETS if self.arm else X86_SETS)}

    @property
    def avx512_vnni(self) -> bool:
        return self.has("avx512_vnni")

    def describe(self) -> str:
        """One line: 'Intel(R) Xeon(R) Processor (AVX2, AVX-512F, AVX-512 VNNI, AMX; no …)'."""
        sets = self.instruction_sets
        have = [label for label, present in sets.items() if present]
        lack = [label for label, present in sets.items() if not present]
        parts = [", ".join(have) if have else "none of " + ", ".join(sets)]
        if have and lack:
            parts.append("no " + ", ".join(lack))
        text = f"{self.name} ({'; '.join(parts)})"
        return text + (f", torch kernels {self.capability}" if self.capability else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "instruction_sets": self.instruction_sets, "torch_cpu_capability": self.capability}


def parse_cpuinfo(text: str, capability: str = "", machine: str = "") -> CpuInfo:
    """A ``CpuInfo`` from the text of ``/proc/cpuinfo`` (the first processor's entry; x86 ``flags`` or ARM
    ``Features``), falling back on ``machine`` for the name."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key and key not in fields:
            fields[key] = value.strip()
    arm = "features" in fields and "flags" not in fields or machine.lower().startswith(("arm", "aarch64"))
    flags = frozenset((fields.get("flags") or fields.get("features") or "").split())
    name = (fields.get("model name") or fields.get("hardware") or fields.get("processor", "")).strip()
    if not name or name.isdigit():  # x86's "processor : 0" is an index, not a name
        name = machine or "an unnamed CPU"
    return CpuInfo(name, flags, capability, arm)


def cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CPU (an unnamed one with no flags where ``path`` cannot be read, as off Linux)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    info = parse_cpuinfo(text, torch.backends.cpu.get_cpu_capability(), platform.machine())
    if not text and platform.processor():
        info = CpuInfo(platform.processor(), info.flags, info.capability, info.arm)
    return info


# --- measuring ------------------------------------------------------------------------------------------------

def parse_batches(text: str | Iterable[int]) -> list[int]:
    """Batch sizes from '1,4,16,64' (or a list of ints), each at least 1, in increasing order."""
    if isinstance(text, str):
        try:
            values = [int(b) for b in text.split(",") if b.strip()]
        except ValueError:
            raise WlmError(f"--batches takes whole numbers separated by commas, e.g. 1,4,16,64; got {text!r}") from None
    else:
        values = list(text)
    if not values:
        raise WlmError("no batch size given; use e.g. --batches 1,4,16,64")
    for b in values:
        if not isinstance(b, numbers.Integral) or isinstance(b, bool) or b < 1:
            raise WlmError(f"a batch size must be a whole number of at least 1, got {b!r}; e.g. --batches 1,4,16,64")
    return sorted({int(b) for b in values})


def check_batches(batches: Iterable[int], tokens: int) -> list[int]:
    """``parse_batches``, and each batch's streams long enough: ``batchify`` gives each stream tokens // batch."""
    batches = parse_batches(batches)
    for b in batches:
        if tokens // b < 2:
            raise WlmError(f"{tokens:,} tokens are too few for batch {b}: each of its {b} streams needs at least 2 "
                           f"tokens; use --max-tokens {2 * b:,} or more, or smaller batches")
    return batches


@torch.no_grad()
def _warm_up(model: nn.Module, source: torch.Tensor, batch: int) -> None:
    """Two steps at this batch, untimed: the first call at a new shape allocates what later calls reuse."""
    model(source[: min(2, source.size(0) - 1)], model.init_hidden(batch))


@torch.no_grad()
def paired_part_seconds(models: Sequence[nn.Module], data: torch.Tensor, batch: int,
                        bptt: int = BPTT) -> tuple[list[dict[str, float]], int]:
    """Every model's forward walk over ``data`` batchified into ``batch`` streams, each part timed on its own:
    ([{part: seconds} per model], positions read by each model).

    The models take turns chunk by chunk (the first model first on even chunks, last on odd ones), each carrying
    its own hidden state, so a busy moment of a shared machine slows all of them alike and their ratio holds. The
    parts run as ``LSTMModel.forward`` runs them: embedding and dropout, LSTM, dropout and decoder."""
    source = batchify(data, batch)
    for model in models:
        model.eval()
        _warm_up(model, source, batch)
    hidden = [model.init_hidden(batch) for model in models]
    seconds = [dict.fromkeys(PART_NAMES, 0.0) for _ in models]
    clock = time.perf_counter
    for n, i in enumerate(range(0, source.size(0) - 1, bptt)):
        inputs, _ = get_batch(source, i, bptt)
        order = range(len(models)) if n % 2 == 0 else reversed(range(len(models)))
        for k in order:
            model, spent = models[k], seconds[k]
            t0 = clock()
            emb = model.drop(model.encoder(inputs))
            t1 = clock()
            output, hidden[k] = model.rnn(emb, hidden[k])
            t2 = clock()
            model.decoder(model.drop(output))
            t3 = clock()
            spent["embedding"] += t1 - t0
            spent["lstm"] += t2 - t1
            spent["decoder"] += t3 - t2
    return seconds, (source.size(0) - 1) * batch


def forward_tokens_per_s(model: nn.Module, data: torch.Tensor, batch: int, bptt: int = BPTT) -> float:
    """Positions read per second by ``model`` alone, forward only, over ``data`` batchified into ``batch``
    streams."""
    (seconds,), positions = paired_part_seconds([model], data, batch, bptt)
    total = sum(seconds.values())
    return positions / total if total > 0 else float("inf")


def tutorial_int8(model: nn.Module) -> nn.Module:
    """The tutorial's int8 variant, packed for the engine in use now (call it inside ``quantized_engine``)."""
    return quantize(model, PRESETS["tutorial"])  # no shared parts: another engine's packed parts would be lent


@dataclass(frozen=True)
class SpeedupResult:
    table: pd.DataFrame  # COLUMNS: one row per engine and batch
    parts: pd.DataFrame | None  # PART_COLUMNS: per-part time at the smallest and largest batch, or None
    cpu: CpuInfo
    tokens: int  # the test tokens every measurement reads
    threads: int
    bptt: int
    torch_version: str
    # engine -> {"quantize": engines in use while it quantized}, read from torch.backends.quantized.engine inside
    # the block: the proof that a row's int8 model carries the packed weights of the engine it names
    engines_seen: dict = field(default_factory=dict)
    note: str = ""  # e.g. that max_tokens was clamped

    def setting(self) -> str:
        threads = in_words(self.threads)
        return (f"torch {self.torch_version}, {threads}, the first {self.tokens:,} test tokens, forward only, "
                f"chunks of {self.bptt}")

    def to_dict(self) -> dict:
        return {"cpu": self.cpu.to_dict(), "torch": self.torch_version, "tokens": self.tokens,
                "threads": self.threads, "bptt": self.bptt, "rows": self.table.to_dict(orient="records"),
                "parts": None if self.parts is None else self.parts.to_dict(orient="records"),
                "engines_seen": {e: {k: list(v) for k, v in seen.items()} for e, seen in self.engines_seen.items()},
                "takeaway": speedup_takeaway(self.table), "notes": notes(self.table, self.cpu)}


def parts_engine(engines: Sequence[str]) -> str:
    """The engine the per-part timing uses: the one in use now (torch's default, x86 on Intel and AMD) when it is
    among ``engines``, else the first."""
    return current_engine() if current_engine() in engines else engines[0]


def when_int8_pays(model: nn.Module, ids: torch.Tensor, *, engines: str | Sequence[str] | None = None,
                   batches: Iterable[int] = DEFAULT_BATCHES, max_tokens: int | None = DEFAULT_TOKENS,
                   bptt: int = BPTT, threads: int | None = 1, parts: bool = True,
                   progress: Progress | None = None, cpu: CpuInfo | None = None) -> SpeedupResult:
    """Float and int8 tokens per second at each batch, for each engine (all of this CPU's when None): float and
    int8 take turns chunk by chunk on the same tokens (``paired_part_seconds``), so each row's ratio is taken on
    one machine state. With ``parts``, the per-part time of both at the smallest and largest batch, from the same
    walks under ``parts_engine``. The engine in use before the call is in use after it, even when a measurement
    fails. ``progress(label, done, total)`` is called before each walk and once at the end."""
    engines = parse_engines(engines)
    data, note = limit_tokens(ids, max_tokens)
    batches = check_batches(batches, len(data))
    part_batches = sorted({batches[0], batches[-1]}) if parts else []
    part_engine = parts_engine(engines)
    total = len(engines) * len(batches)
    done = [0]

    def measuring(label: str) -> None:
        if progress is not None:
            progress(label, done[0], total)

    def measured() -> None:
        done[0] += 1

    rows, part_rows, seen = [], [], {}
    with num_threads(threads):
        for engine in engines:
            # The packing fixes the kernels, so the engine is held only while quantizing: quantizing elsewhere in
            # the process (another visitor's variant) waits for seconds, not for the whole sweep.
            with quantized_engine(engine):
                measuring(f"{engine}: quantizing")
                quantized_under = {current_engine()}
                int8 = tutorial_int8(model)
                quantized_under.add(current_engine())
            for batch in batches:
                measuring(f"{engine}: float and int8, batch {batch}")
                spent, positions = paired_part_seconds([model, int8], data, batch, bptt)
                measured()
                float_tps, int8_tps = (positions / sum(s.values()) for s in spent)
                rows.append({"engine": engine, "batch": batch, "float_tokens_per_s": float_tps,
                             "int8_tokens_per_s": int8_tps, "speedup": int8_tps / float_tps})
                if engine == part_engine and batch in part_batches:
                    part_rows += [{"engine": engine, "batch": batch, "model": name, "part": part,
                                   "seconds": t, "us_per_token": 1e6 * t / positions}
                                  for name, parts_spent in zip(MODELS, spent) for part, t in parts_spent.items()]
            seen[engine] = {"quantize": tuple(sorted(quantized_under))}
            del int8
    if progress is not None:
        progress("done", total, total)
    return SpeedupResult(pd.DataFrame(rows, columns=COLUMNS),
                         pd.DataFrame(part_rows, columns=PART_COLUMNS) if parts else None,
                         cpu or cpu_info(), len(data), threads or torch.get_num_threads(), bptt,
                         torch.__version__, seen, note)


@dataclass(frozen=True)
class Probe:
    """A short timing to estimate sweeps from: the seconds to quantize the tutorial's variant, and float's and
    int8's tokens per second at a small and a large batch, under the engine in use."""

    quantize_seconds: float
    speeds: dict  # (model, batch) -> tokens per second, model in MODELS

    def tokens_per_s(self, name: str, batch: int) -> float:
        """Speeds between the probed batches interpolated in log(batch), beyond them the nearest one's."""
        probed = sorted({b for _, b in self.speeds})
        low, high = probed[0], probed[-1]
        batch = min(max(batch, low), high)
        if batch in probed:
            return self.speeds[name, batch]
        w = (math.log(batch) - math.log(low)) / (math.log(high) - math.log(low))
        return math.exp((1 - w) * math.log(self.speeds[name, low]) + w * math.log(self.speeds[name, high]))

    def seconds(self, tokens: int, batches: Iterable[int], engines: int) -> float:
        """About how long ``when_int8_pays`` takes on ``tokens`` tokens, each engine assumed to cost what the
        probed one does (qnnpack, made for ARM, takes longer on x86)."""
        per_engine = self.quantize_seconds + sum(tokens / self.tokens_per_s(name, b)
                                                 for name in MODELS for b in parse_batches(batches))
        return engines * per_engine


def probe(model: nn.Module, ids: torch.Tensor, batches: Iterable[int], *, bptt: int = BPTT,
          threads: int | None = 1, probe_tokens: int = 300) -> Probe:
    """Quantize the tutorial's variant under the engine in use (no switch), then time float and int8 at the
    smallest and largest of ``batches`` on ``probe_tokens`` tokens, or 12 steps of the largest batch."""
    batches = parse_batches(batches)
    # A split too short for the largest batch is probed at the largest it holds (a short probe then gives a rough
    # figure: the estimate's purpose).
    probed = sorted({min(b, max(1, len(ids) // 2)) for b in (batches[0], batches[-1])})
    speeds = {}
    with num_threads(threads):
        start = time.perf_counter()
        int8 = tutorial_int8(model)
        quantize_seconds = time.perf_counter() - start
        for b in probed:
            data = ids[: max(probe_tokens, 13 * b)]
            spent, positions = paired_part_seconds([model, int8], data, b, bptt)
            speeds.update({(name, b): positions / max(sum(t.values()), 1e-9) for name, t in zip(MODELS, spent)})
    return Probe(quantize_seconds, speeds)


def estimate_seconds(model: nn.Module, ids: torch.Tensor, *, engines: Sequence[str], batches: Iterable[int],
                     max_tokens: int | None = DEFAULT_TOKENS, bptt: int = BPTT, threads: int | None = 1) -> float:
    """About how long ``when_int8_pays`` takes here with these arguments, from a short ``probe``."""
    data, _ = limit_tokens(ids, max_tokens)
    batches = check_batches(batches, len(data))
    return probe(model, data, batches, bptt=bptt, threads=threads).seconds(len(data), batches, len(list(engines)))


# --- what the numbers say -------------------------------------------------------------------------------------

def _x(value: float) -> str:
    return f"{value:.2f}×"


def engine_story(table: pd.DataFrame, engine: str) -> str:
    """Where int8 under ``engine`` pays (at least ``PAYS`` × float) and where it stops, in one clause."""
    rows = table[table["engine"] == engine].sort_values("batch")
    batches, speedups = list(rows["batch"]), list(rows["speedup"])
    first, last = f"{_x(speedups[0])} at batch {batches[0]}", f"{_x(speedups[-1])} at {batches[-1]}"
    pays = [s >= PAYS for s in speedups]
    if all(pays):
        return (f"{engine} pays at every batch measured ({first}, {last})" if len(rows) > 1
                else f"{engine} pays at batch {batches[0]} ({_x(speedups[0])})")
    if not any(pays):
        if max(speedups) < 1:
            return (f"{engine} never pays: slower than float at every batch ({first}, {last})" if len(rows) > 1
                    else f"{engine} does not pay: slower than float ({_x(speedups[0])})")
        return f"{engine} never pays more than {_x(max(speedups))}"
    if pays[0]:
        stop = next(i for i in range(1, len(pays)) if not pays[i])
        return (f"{engine} pays up to batch {batches[stop - 1]} ({_x(speedups[stop - 1])}) and stops paying from "
                f"batch {batches[stop]} ({_x(speedups[stop])})")
    start = pays.index(True)  # below at first, paying later
    return f"{engine} pays only from batch {batches[start]} ({_x(speedups[start])}; {first})"


def speedup_takeaway(table: pd.DataFrame) -> str:
    """The speedup chart's takeaway: where int8 pays on this machine, per engine."""
    if table.empty:
        return "Nothing was measured."
    return "; ".join(engine_story(table, e) for e in dict.fromkeys(table["engine"])) + "."


def _speedup(table: pd.DataFrame, engine: str, batch: int) -> float | None:
    match = table[(table["engine"] == engine) & (table["batch"] == batch)]
    return float(match["speedup"].iloc[0]) if len(match) else None


LEVEL = 1.1  # engines within 10 % of the fastest are level: a shared machine's timings move that much
HOLDS = 1.35  # a speedup that falls by less than this from the smallest batch to the largest holds up
LEVEL_NOTE = " (level within timing noise)"


def _level(speedups: dict[str, float]) -> list[str]:
    """The engines within ``LEVEL`` of the fastest, fastest first."""
    ranked = sorted(speedups, key=lambda e: -speedups[e])
    return [e for e in ranked if speedups[e] * LEVEL >= speedups[ranked[0]]]


def _listed(engines: list[str], speedups: dict[str, float]) -> str:
    named = [f"{e} {_x(speedups[e])}" for e in engines]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


def notes(table: pd.DataFrame, cpu: CpuInfo) -> list[str]:
    """What to notice, each sentence computed from the numbers: which engine is fastest, why int8's advantage
    shrinks as batches grow (weights read against arithmetic), qnnpack, x86 against fbgemm, reduce_range."""
    if table.empty:
        return []
    engines = list(dict.fromkeys(table["engine"]))
    low, high = int(table["batch"].min()), int(table["batch"].max())
    at_low = {e: _speedup(table, e, low) for e in engines}
    at_high = {e: _speedup(table, e, high) for e in engines}
    said = []
    level_low, level_high = _level(at_low), _level(at_high)
    best = level_low[0]  # the fastest at the smallest batch
    if low == high:
        said.append(f"Fastest int8 engine{'s' if len(level_low) > 1 else ''} here at batch {low}: "
                    f"{_listed(level_low, at_low)}{LEVEL_NOTE if len(level_low) > 1 else ''}.")
    else:
        said.append(f"Fastest int8 engine{'s' if len(level_low) > 1 else ''} at batch {low}: "
                    f"{_listed(level_low, at_low)}{LEVEL_NOTE if len(level_low) > 1 else ''}; at batch {high}: "
                    f"{_listed(level_high, at_high)}.")
        both = [e for e in level_high if e in level_low]
        packed = "before quantizing (the weights are packed for the engine in use then)"
        if both:
            said.append(f"So for every batch measured here pick {both[0]}: set "
                        f"`torch.backends.quantized.engine = '{both[0]}'` {packed}.")
        else:
            said.append(f"So pick by batch: {best} for batch {low}, {level_high[0]} for batch {high}; set "
                        f"`torch.backends.quantized.engine` {packed}.")
        a, b = at_low[best], at_high[best]
        units = "AVX-512" if cpu.has("avx512f") else "AVX2" if cpu.has("avx2") else "vector"
        if b * HOLDS < a:
            said.append(f"Why {best}'s advantage shrinks from {_x(a)} to {_x(b)}: at batch {low} every LSTM step "
                        "multiplies one vector by each weight matrix, so the time goes to reading weights, and int8 "
                        f"weights are a quarter of float's bytes. At batch {high} each weight read serves {high} "
                        f"streams, the work becomes arithmetic, and float's {units} multiply-adds keep up with int8's "
                        "(which also pays to quantize every activation and convert every result back).")
        for e in engines:
            lo, hi = sorted((at_low[e], at_high[e]))
            if lo >= PAYS and hi < HOLDS * lo and (e != best or b * HOLDS >= a):
                span = _x(lo) if _x(lo) == _x(hi) else f"{_x(lo)} to {_x(hi)}"
                said.append(f"{e} keeps {span} from batch {low} to {high}: its int8 products keep pace with "
                            "float's as the batch grows.")
    rival = next((e for e in ("x86", "fbgemm") if e in engines), None)
    if (low != high and cpu.has("amx_tile") and "onednn" in engines and rival
            and at_high["onednn"] > LEVEL * at_high[rival]):
        said.append(f"This CPU has AMX: onednn runs its int8 matrix products on the AMX tiles (`ONEDNN_VERBOSE=1` "
                    f"names the kernel brg_matmul:…amx), {rival} on AVX-512 VNNI, which is why onednn keeps its "
                    f"advantage at batch {high} ({_x(at_high['onednn'])} against {rival}'s {_x(at_high[rival])}).")
    if "qnnpack" in engines:
        q = table[table["engine"] == "qnnpack"]["speedup"]
        span = _x(q.max()) if len(q) == 1 else f"{_x(q.iloc[0])} at batch {low} to {_x(q.iloc[-1])} at {high}"
        if cpu.arm:
            said.append(f"qnnpack is built for ARM CPUs like this one (NEON kernels): {span} float's speed.")
        else:
            said.append(f"qnnpack is built for ARM phones (NEON kernels); on this x86 CPU it runs {span} float's "
                        "speed, so never pick it here.")
    if "x86" in engines and "fbgemm" in engines:
        x, f = at_low["x86"], at_low["fbgemm"]
        text = (f"x86 picks fbgemm's kernels for Linear layers (the LSTM's gate products included), so its rows "
                f"and fbgemm's differ only by timing noise (batch {low}: x86 {_x(x)}, fbgemm {_x(f)})")
        if max(x, f) / min(x, f) > 1.25:
            text += "; a gap that wide means the machine was busy while they ran: measure again"
        said.append(text + ".")
    if any(e in engines for e in ("x86", "fbgemm", "onednn")) and not cpu.arm:
        overflow = ("reduce_range: fbgemm and onednn quantize each activation to 7 bits (0–127), not 8. That "
                    "exists for fbgemm's path on CPUs without AVX-512 VNNI, which adds pairs of 8-bit products into "
                    "16-bit sums: 2 × 255 × 127 = 64,770 would overflow int16's 32,767, 2 × 127 × 127 = 32,258 fits.")
        if cpu.avx512_vnni:
            overflow += (" This CPU has AVX-512 VNNI, which adds the products straight into 32-bit sums, so here the "
                         "lost bit only costs precision.")
        elif cpu.flags:
            overflow += " This CPU has no AVX-512 VNNI, so fbgemm takes that 16-bit path here."
        if "qnnpack" in engines:
            overflow += " qnnpack ignores reduce_range (8-bit activations), which is one reason its logits differ."
        said.append(overflow)
    return said


def parts_takeaway(parts: pd.DataFrame | None, bptt: int = BPTT) -> str:
    """The per-part chart's takeaway: which part takes float's time at each batch, and what int8 gains in each."""
    if parts is None or parts.empty:
        return "Nothing was measured."
    said, gains = [], {}
    for batch, rows in parts.groupby("batch", sort=True):
        t = rows.pivot_table(index="part", columns="model", values="us_per_token", aggfunc="sum")
        gains[batch] = gain = t["float"] / t["int8"]
        part = str(t["float"].idxmax())
        share = t.loc[part, "float"] / t["float"].sum()
        overall = t["float"].sum() / t["int8"].sum()
        said.append(f"at batch {batch} the {part} takes {share:.0%} of float's time; int8 runs the LSTM "
                    f"{_x(gain['lstm'])} and the decoder {_x(gain['decoder'])} as fast ({_x(overall)} overall)")
    text = "; ".join(said)
    text = text[0].upper() + text[1:] + "."
    low, high = min(gains), max(gains)
    if high > low and gains[high]["lstm"] > 1.25 * gains[high]["decoder"]:
        text += (f" The LSTM goes one step at a time, so even at batch {high} each step reads every weight for only "
                 f"{high} rows; the decoder multiplies a whole chunk at once ({bptt} × {high} = {bptt * high:,} rows), "
                 "where arithmetic, not reading weights, sets the pace.")
    emb = parts[parts["part"] == "embedding"].groupby("model")["us_per_token"].mean()
    if {"float", "int8"} <= set(emb.index):
        text += (f" The embedding is a table lookup the tutorial leaves in float: {emb['float']:.1f} and "
                 f"{emb['int8']:.1f} µs a token, the same work.")
    return text
