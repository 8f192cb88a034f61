"""The state of one medgate run, without pytest: what to run, and what came back.

`RunPlan` expands options into datasets, cases and gate cells (identically in every process).
`WorkerSide` predicts a whole group of cases on first use. `ControllerSide` holds the case records
and worker payloads merged so far (see worker_payload.py) and knows what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from medgate.backends import BackendSettings, cuda_available
from medgate.backends.http import ServerError
from medgate.cases import Case, by_group, expand_cases
from medgate.datasets import LoadedDataset, load_dataset
from medgate.datasets.registry import registry
from medgate.gates import GateCell, GateRecord, gate_cells, unknown_datasets
from medgate.metrics import CaseRecord, MetricValue, compute_metrics, index_metrics
from medgate.options import RunOptions
from medgate.paths import cache_dir
from medgate.predictor import ModelLoadError, Predictor, PredictorSettings
from medgate.worker_payload import GateDescriptor

# On CPU small batches are fastest (measured on MedQA prompts: 63 items/s at 1024 padded tokens per
# pass, 45 at 8192, 21 at 32768: the attention intermediates outgrow the caches); a GPU wants big ones.
CPU_TOKEN_BUDGET = 1024
CUDA_TOKEN_BUDGET = 16384
CUDA_MAX_TOKEN_BUDGET = 1 << 20


class RunPlan:
    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.failure: str | None = None  # why the cases could not be built (bad data), once known

    def load(self) -> None:
        """Build the cases once; a data error is remembered instead of raised again per module."""
        from medgate.datasets import DatasetError
        from medgate.items import ItemError
        from medgate.perturbations import PerturbationError

        if self.failure is not None:
            return
        try:
            self.cases  # noqa: B018 - builds and caches
        except (DatasetError, ItemError, PerturbationError, ValueError) as error:
            self.failure = str(error)

    @cached_property
    def datasets(self) -> list[LoadedDataset]:
        o = self.options
        return [load_dataset(name, o.data_dir, o.limit, o.seed, o.subsets) for name in o.datasets]

    @cached_property
    def cases(self) -> list[Case]:
        o = self.options
        misspelt = unknown_datasets(o.thresholds, [d.name for d in self.datasets], registry())
        if misspelt:
            raise ValueError(f"{o.thresholds.source}: {'; '.join(misspelt)}: no dataset of this run and no "
                             "registered one (a misspelt name would gate nothing)")
        cases = expand_cases(self.datasets, o.perturbations, o.prompts, o.seed, o.group_size)
        seen: set[str] = set()
        for case in cases:
            if case.case_id in seen:
                raise ValueError(f"case {case.case_id} appears twice: is the same dataset selected twice?")
            seen.add(case.case_id)
        return cases

    @cached_property
    def combos(self) -> set[tuple[str, str, str, str]]:
        self.load()
        return set() if self.failure else {(c.dataset, c.perturbation, c.prompt, c.mode) for c in self.cases}

    def gate_cells(self, metric: str) -> list[GateCell]:
        return gate_cells(metric, self.options.thresholds, self.combos)


def resolve_device(requested: str, backend: str) -> str:
    if requested != "auto":
        return requested
    if backend in ("onnxruntime", "openai"):  # openai: for the ONNX Runtime reference of --check-parity
        return "cuda" if cuda_available() else "cpu"
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class WorkerPlace:
    """Which worker this process is, of how many (xdist's `config.workerinput`; 0 of 1 without xdist)."""

    index: int = 0
    count: int = 1

    @classmethod
    def from_workerinput(cls, workerinput: Mapping[str, Any] | None) -> WorkerPlace:
        if not workerinput:
            return cls()
        worker = str(workerinput.get("workerid", "gw0"))
        index = int(worker[2:]) if worker[2:].isdigit() else 0
        return cls(index, max(1, int(workerinput.get("workercount", 1) or 1)))


def worker_threads(place: WorkerPlace) -> int:
    return max(1, (os.cpu_count() or 1) // place.count)


def worker_device_id(place: WorkerPlace) -> int:
    """Round-robin workers over the visible GPUs (gw0 -> 0, gw1 -> 1, ...)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = len([d for d in visible.split(",") if d.strip()]) if visible else _gpu_count()
    return place.index % count if count else 0


def _gpu_count() -> int:
    try:
        import onnxruntime
    except ImportError:
        return 0
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return 0
    try:
        import subprocess

        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
        return max(1, sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU ")))
    except (OSError, subprocess.SubprocessError):
        return 1


def predictor_settings(options: RunOptions, place: WorkerPlace = WorkerPlace()) -> PredictorSettings:
    device = resolve_device(options.device, options.backend)
    budget = options.token_budget or (CUDA_TOKEN_BUDGET if device == "cuda" else CPU_TOKEN_BUDGET)
    # An explicit --token-budget is a fixed size; the default grows on a GPU.
    ceiling = budget if options.token_budget or device != "cuda" else CUDA_MAX_TOKEN_BUDGET
    backend = BackendSettings(
        name=options.backend,
        device=device,
        device_id=worker_device_id(place) if device == "cuda" else 0,
        dtype="fp16" if device == "cuda" else "fp32",
        threads=worker_threads(place),
        token_budget=budget,
        max_token_budget=ceiling,
        gpu_mem_limit=options.gpu_mem_limit,
        max_context=options.max_context,
        server=options.server,
        prefix_sharing=options.prefix_sharing,
    )
    parity = None
    if options.check_parity:
        parity = "torch" if options.backend == "onnxruntime" else "onnxruntime"
    return PredictorSettings(model=options.model, backend=backend, max_new_tokens=options.max_new_tokens,
                             record_prompts=options.record_prompts, allow_download=options.allow_download,
                             parity_backend=parity,
                             cache_path=cache_dir() / "predictions.sqlite" if options.prediction_cache else None)


class WorkerSide:
    def __init__(self, options: RunOptions, place: WorkerPlace = WorkerPlace()) -> None:
        self.predictor = Predictor(predictor_settings(options, place))
        self.groups: dict[str, list[Case]] = {}
        self.model_error: str | None = None  # once the model failed to load, every case would fail alike
        self._ready: dict[str, CaseRecord] = {}
        self._failed: dict[str, ServerError] = {}

    def set_selected(self, cases: Sequence[Case]) -> None:
        """Only the cases this session will run are predicted (after -k / --deselect)."""
        self.groups = by_group(cases)

    def record_for(self, case: Case) -> CaseRecord:
        if self.model_error is not None:
            raise ModelLoadError(self.model_error)
        if case.group in self._failed:  # the group's one prediction failed: not retried per case
            raise self._failed[case.group]
        if case.case_id not in self._ready:
            group = self.groups.get(case.group) or [case]
            try:
                records = self.predictor.predict(group)
            except ModelLoadError as error:
                self.model_error = str(error)
                raise
            except ServerError as error:
                self._failed[case.group] = error
                raise
            for record in records:
                self._ready[record["case_id"]] = record
        return self._ready.pop(case.case_id)


@dataclass
class ControllerSide:
    """What came back from the cases, keyed by case id (node ids change with pytest's rootdir)."""

    expected: list[str] = field(default_factory=list)  # case ids this run set out to answer, in order
    records: dict[str, CaseRecord] = field(default_factory=dict)  # case id -> case record
    gate_results: dict[str, GateRecord] = field(default_factory=dict)  # nodeid -> gate verdict
    gate_descriptors: dict[str, GateDescriptor] = field(default_factory=dict)  # sent by xdist workers
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)  # worker id -> its manifest
    crashed_workers: dict[str, str] = field(default_factory=dict)
    model_errors: dict[str, str] = field(default_factory=dict)  # worker id -> why its model did not load
    _metrics: list[MetricValue] | None = None

    def add_record(self, record: CaseRecord) -> None:
        self.records[record["case_id"]] = record
        self._metrics = None

    def ordered_records(self) -> list[CaseRecord]:
        """Records in collection order (xdist delivers them in completion order)."""
        ordered = [self.records[c] for c in self.expected if c in self.records]
        listed = set(self.expected)
        return ordered + [r for c, r in self.records.items() if c not in listed]

    def missing_cases(self) -> list[str]:
        """Expected cases without an outcome: never run (a worker died, the run was stopped) or failed."""
        return [c for c in self.expected if c not in self.records]

    def metrics(self) -> list[MetricValue]:
        if self._metrics is None:
            self._metrics = compute_metrics(list(self.records.values()))
        return self._metrics

    def metric_index(self) -> dict[tuple[str, str, str, str, str], MetricValue]:
        return index_metrics(self.metrics())
