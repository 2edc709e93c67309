"""Model bundle (DESIGN §7, a contract): read, validate, write.

A bundle is a directory with `model.onnx` and `bundle.json`. Loading never imports
torch: onnxruntime runs the model. Anything wrong (missing files, bad JSON, another
format version, a checksum or shape mismatch) is a `BundleError` naming the problem,
so the sidecar can say why it runs on statistics alone.

Template vocabulary: the live miner's ids need not match the ids seen in training,
so records map to vocabulary entries by template *text*: exact text first, else the
record's message is matched against each entry's pattern (`<*>` and the miner's
typed masks such as `<NUM>` = any run of characters), most specific entry winning.
Nothing matching means "unknown template" (index 1), which normal sessions never contain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .detectors.session_model import SessionSetModel

FORMAT = "logguardian-bundle"
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
META_FILE = "bundle.json"
SESSION_FILE = "session.onnx"  # optional session autoencoder
MINER_FILE = "miner.json"  # the training miner's templates: maps live records to vocab ids
PAD = 0
UNK = 1
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_bundle"
MAPPING_DOC = (
    "records map to vocab entries by exact template text, else by the training miner "
    "(miner.json) matching the message to a vocab id, else by matching the message "
    "against the entry's text with <*>/<NUM>/<IP>… as wildcards (most literal characters wins); "
    "index 0 pads windows, index 1 is a template never seen in training"
)


# Wildcards in template texts: Drain-style `<*>` and the miner's typed masks (<NUM>, <IP>…).
_PLACEHOLDER = re.compile(r"<\*>|<[A-Z]+>")


class BundleError(Exception):
    """The bundle cannot be used; the message says why."""


class Vocabulary:
    """Template text → model index, tolerant of a live miner that generalizes differently."""

    def __init__(self, texts: list[str], ids: list[str] | None = None, matcher: Any | None = None):
        self.texts = texts
        self._exact = {text: i + 2 for i, text in enumerate(texts)}
        self._by_id = {tid: i + 2 for i, tid in enumerate(ids or [])}
        self._matcher = matcher
        patterns = []
        for i, text in enumerate(texts):
            pieces = _PLACEHOLDER.split(text)
            literal = sum(len(p.strip()) for p in pieces)
            body = ".*?".join(r"\s+".join(re.escape(w) for w in p.split(" ")) for p in pieces)
            patterns.append((literal, i + 2, re.compile(body, re.DOTALL)))
        patterns.sort(key=lambda item: -item[0])
        self._patterns = patterns

    def __len__(self) -> int:
        return len(self.texts) + 2

    def index(self, template: str, message: str) -> int:
        found = self._exact.get(template)
        if found is not None:
            return found
        if self._matcher is not None:
            matched = self._matcher.match(message)
            if matched is not None:
                found = self._by_id.get(matched[0])
                if found is not None:
                    return found
        for _, idx, pattern in self._patterns:
            if pattern.fullmatch(message) or pattern.fullmatch(template):
                return idx
        return UNK

    def text(self, index: int) -> str:
        if index == UNK:
            return "<unknown template>"
        if index == PAD:
            return "<start>"
        return self.texts[index - 2]


@dataclass
class Bundle:
    path: Path
    meta: dict[str, Any]
    vocab: Vocabulary
    window: int
    surprise_threshold: float
    surprise_base: float
    session_model: SessionSetModel | None
    session_key: str | None
    end_templates: frozenset[int]
    runner: Any  # onnxruntime.InferenceSession
    input_name: str
    loaded_at: float
    session_runner: Any = None
    session_threshold: float = float("inf")

    def session_errors(self, profiles: np.ndarray) -> np.ndarray | None:
        """Autoencoder reconstruction error per session profile (None without one)."""
        if self.session_runner is None:
            return None
        return self.session_runner.run(None, {"profile": profiles})[0]

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Log-probabilities of the next template, shape (n, len(vocab))."""
        return self.runner.run(None, {self.input_name: windows})[0]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a bundle is rewritten: names, mtimes and sizes of its files."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return ()
    out = []
    for entry in entries:
        if entry.is_file():
            st = entry.stat()
            out.append((entry.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


def load_bundle(path: Path | str) -> Bundle:
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle not found: {path} is not a directory")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"model bundle {path} has no {META_FILE}")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"model bundle {path}: {META_FILE} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"model bundle {path}: {META_FILE} is not a {FORMAT} file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {path}: format version {version!r}, this LogGuardian reads "
            f"version {FORMAT_VERSION}; retrain with `logguardian train`"
        )
    try:
        texts = [str(entry["text"]) for entry in meta["vocab"]]
        ids = [str(entry["id"]) for entry in meta["vocab"]]
        window = int(meta["window"])
        surprise_threshold = float(meta["thresholds"]["sequence_surprise"])
        surprise_base = float(meta["thresholds"]["surprise_base"])
        session_doc = meta.get("session_model")
        session_model = SessionSetModel.from_json(session_doc) if session_doc else None
        end_templates = frozenset(int(i) for i in meta.get("end_templates", []))
        files = dict(meta["files"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(
            f"model bundle {path}: {META_FILE} is missing or has a bad field ({exc!r})"
        ) from None
    if window < 1:
        raise BundleError(f"model bundle {path}: window must be >= 1, got {window}")
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise BundleError(f"model bundle {path} has no {MODEL_FILE}")
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"model bundle {path}: {name} is listed but missing")
        if sha256(file) != expected:
            raise BundleError(f"model bundle {path}: {name} is corrupt (checksum mismatch)")
    runner = _onnx(path, MODEL_FILE)
    session_runner, session_threshold = None, float("inf")
    autoencoder = meta.get("session_autoencoder")
    if autoencoder:
        try:
            session_threshold = float(autoencoder["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"model bundle {path}: session_autoencoder has a bad field ({exc!r})"
            ) from None
        if SESSION_FILE not in files:
            raise BundleError(f"model bundle {path}: {SESSION_FILE} is not listed in files")
        session_runner = _onnx(path, SESSION_FILE)
    matcher = None
    if (path / MINER_FILE).is_file():
        from .templates import TemplateMiner

        matcher = TemplateMiner()
        try:
            matcher.import_state(json.loads((path / MINER_FILE).read_bytes()))
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise BundleError(
                f"model bundle {path}: {MINER_FILE} is unreadable ({exc!r})"
            ) from None
    vocab = Vocabulary(texts, ids, matcher)
    bundle = Bundle(
        path=path,
        meta=meta,
        vocab=vocab,
        window=window,
        surprise_threshold=surprise_threshold,
        surprise_base=surprise_base,
        session_model=session_model,
        session_key=meta.get("session_key"),
        end_templates=end_templates,
        runner=runner,
        input_name=runner.get_inputs()[0].name,
        loaded_at=time.time(),
        session_runner=session_runner,
        session_threshold=session_threshold,
    )
    try:
        probe = bundle.predict(np.zeros((1, window), dtype=np.int64))
    except Exception as exc:
        raise BundleError(
            f"model bundle {path}: {MODEL_FILE} fails on a probe window ({exc})"
        ) from None
    if probe.shape != (1, len(vocab)):
        raise BundleError(
            f"model bundle {path}: model predicts {probe.shape[-1]} classes, vocab has {len(vocab)}"
        )
    try:
        errors = bundle.session_errors(np.zeros((1, len(vocab)), dtype=np.float32))
    except Exception as exc:
        raise BundleError(
            f"model bundle {path}: {SESSION_FILE} fails on a probe profile ({exc})"
        ) from None
    if errors is not None and errors.shape != (1,):
        raise BundleError(f"model bundle {path}: {SESSION_FILE} returns shape {errors.shape}")
    return bundle


def _onnx(path: Path, name: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(path / name), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise BundleError(f"model bundle {path}: onnxruntime cannot load {name} ({exc})") from None


def write_bundle(
    out: Path,
    meta: dict[str, Any],
    model_onnx: bytes,
    miner_state: dict[str, Any] | None = None,
    session_onnx: bytes | None = None,
) -> None:
    """Writes a bundle next to `out` and swaps it in, so a sidecar hot-reloading `out`
    never sees a half-written bundle."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    (staging / MODEL_FILE).write_bytes(model_onnx)
    files = [MODEL_FILE]
    if miner_state is not None:
        (staging / MINER_FILE).write_bytes(json.dumps(miner_state).encode())
        files.append(MINER_FILE)
    if session_onnx is not None:
        (staging / SESSION_FILE).write_bytes(session_onnx)
        files.append(SESSION_FILE)
    meta = dict(
        meta,
        format=FORMAT,
        format_version=FORMAT_VERSION,
        mapping=MAPPING_DOC,
        files={name: sha256(staging / name) for name in files},
    )
    (staging / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    staging.chmod(0o755)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
