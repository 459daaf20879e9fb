"""Checkpoint files: atomic save, safe load (weights_only=True), constructor arguments, model loading.

Reads: `torch.save` dicts, ours or released by naver/croco: `model` (state_dict, reference key names),
`croco_kwargs` (CroCo v2 and slife), or an older `args` whose `model` field is a string such as
"CroCoNet(enc_embed_dim=1024, enc_depth=24, pos_embed='RoPE100')" (official pre-training code), or
neither (CroCo v1 release: default arguments). A slife checkpoint of a ViT objective (`objective` dinov2 or
egomotion) holds `vit_kwargs` instead, and its `model` is a `train/vit.py` encoder in timm's layout.
`ModelSpec` says which network a checkpoint's `model` is: its kind (`croco` or `vit`) and constructor
arguments, recovered by `model_spec_from_ckpt` from what the checkpoint records.
Writes: `save_checkpoint(path, obj)` through `slife.io.atomic_file` (a temporary file in the same folder, then
`os.replace`).
Entry points: `save_checkpoint`, `load_checkpoint`, `croco_args_from_ckpt`, `model_spec_from_ckpt`,
`objective_of`, `load_model`.
Every problem with a file is a one-line `SlifeError` naming it. What goes into a training checkpoint
(optimizer, rng, data position, the objective's state) is decided by the trainer (`train/loop.py`) and the
objective (`train/objectives/`).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from slife.errors import SlifeError
from slife.io import atomic_file
from slife.train.model import CroCoNet
from slife.train.vit import VisionTransformer

log = logging.getLogger(__name__)

# types a weights_only unpickler rebuilds (besides tensors); checked before saving
_PLAIN = (str, bytes, int, float, bool, complex, type(None), torch.dtype, torch.device, torch.Size,
          torch.memory_format, torch.layout)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _check_weights_only(obj, where: str = "checkpoint") -> None:
    """Raise TypeError naming the first item `torch.load(weights_only=True)` could not rebuild."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN):
        return
    if isinstance(obj, (dict, OrderedDict)):
        for k, v in obj.items():
            if not isinstance(k, _PLAIN):
                raise TypeError(f"{where} has a key of type {type(k).__name__}")
            _check_weights_only(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple, set)) and type(obj) in (list, tuple, set):
        for i, v in enumerate(obj):
            _check_weights_only(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which torch.load(weights_only=True) "
                    "refuses; store tensors, numbers, strings, lists or dicts")


def save_checkpoint(path, obj: dict) -> Path:
    """Write `obj` with torch.save atomically (`slife.io.atomic_file`: temporary file in the same folder, fsync,
    os.replace). Refuses (TypeError) objects that would not load back with weights_only=True. Returns the path."""
    path = Path(path)
    _check_weights_only(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return path


def remove_stale_temporaries(folder) -> int:
    """Delete checkpoint temporaries that a killed writer left in `folder` (`.NAME.pt.tmp<host>-<pid>`, and
    `.NAME.pt.PID.tmp` from slife before `slife.io`); -> how many. Call before a run writes into the folder
    (one writer per folder: rank 0 of one run)."""
    n = 0
    for pattern in (".*.pt.tmp*", ".*.pt.*.tmp"):
        for p in Path(folder).glob(pattern):
            p.unlink(missing_ok=True)
            n += 1
    return n


def load_checkpoint(path, map_location="cpu") -> dict:
    """torch.load(path, weights_only=True) -> dict; SlifeError (one line) for a missing, truncated, corrupt,
    unsafe or non-dict file. argparse.Namespace (the `args` of older CroCo checkpoints) is allowed."""
    path = Path(path)
    if not path.exists():
        raise SlifeError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise SlifeError(f"{path}: is a folder, not a checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure of the file becomes one line
        msg = str(e)
        unsafe = next((ln for ln in msg.splitlines() if "Unsupported global" in ln), None)
        if unsafe is not None:  # a pickle of Python objects: never unpickled with code execution
            what = unsafe.split("Unsupported global:", 1)[1].split(" was not", 1)[0].strip()
            raise SlifeError(f"{path}: refuses to load with weights_only=True: it holds a Python object ({what})") from None
        if "WeightsUnpickler error:" in msg:  # the reason is the first non-empty text after this marker
            detail = next((ln.strip() for ln in msg.split("WeightsUnpickler error:", 1)[1].splitlines() if ln.strip()),
                          "unpickling failed")
        else:
            detail = _first_line(e).split(". ")[0]
        raise SlifeError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {detail}") from None
    if not isinstance(ckpt, dict):
        raise SlifeError(f"{path}: not a checkpoint: holds a {type(ckpt).__name__}, expected a dict")
    return ckpt


def _args_from_model_string(s: str, path) -> dict:
    """Parse "CroCoNet(a=1, b='x', c=(1, 2))" safely (literals only, no eval)."""
    try:
        node = ast.parse(s.strip(), mode="eval").body
    except SyntaxError:
        raise SlifeError(f"{path}: cannot parse the model string {s!r}") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "CroCoNet"):
        raise SlifeError(f"{path}: model string {s!r} is not a CroCoNet(...) call")
    if node.args:
        raise SlifeError(f"{path}: model string {s!r} has positional arguments; expected keywords only")
    out = {}
    for kw in node.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise SlifeError(f"{path}: model string {s!r}: argument {kw.arg} is not a literal") from None
    return out


def croco_args_from_ckpt(ckpt: dict, path="checkpoint") -> dict:
    """The CroCoNet constructor arguments stored in a checkpoint, from any released format.

    `croco_kwargs` (dict) -> a copy; `args` (argparse.Namespace, dict or string) with a `model` string
    "CroCoNet(...)" -> its keywords; nothing -> {} (the CroCo v1 release, built with the defaults).
    Unknown argument names raise SlifeError."""
    if "croco_kwargs" in ckpt:
        args = ckpt["croco_kwargs"]
        if isinstance(args, str):
            args = _args_from_model_string(args if args.lstrip().startswith("CroCoNet") else f"CroCoNet({args})", path)
        elif not isinstance(args, dict):
            raise SlifeError(f"{path}: croco_kwargs is a {type(args).__name__}, expected a dict")
        args = dict(args)
    elif "args" in ckpt:
        a = ckpt["args"]
        model = a.get("model") if isinstance(a, dict) else a if isinstance(a, str) else getattr(a, "model", None)
        args = _args_from_model_string(model, path) if isinstance(model, str) else {}
    else:
        args = {}
    if isinstance(args.get("img_size"), list):
        args["img_size"] = tuple(args["img_size"])
    known = set(inspect.signature(CroCoNet.__init__).parameters) - {"self", "norm_layer"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise SlifeError(f"{path}: unknown CroCoNet argument {unknown[0]!r} in the checkpoint")
    return args


MODEL_CLASSES = {"croco": CroCoNet, "vit": VisionTransformer}  # ModelSpec.kind -> network class


@dataclass(frozen=True)
class ModelSpec:
    """Which network a checkpoint's `model` is: its kind and constructor arguments."""

    kind: str  # "croco" (CroCoNet; arguments stored as `croco_kwargs`) or "vit" (VisionTransformer; `vit_kwargs`)
    kwargs: dict = field(default_factory=dict, hash=False)  # constructor arguments

    def __post_init__(self):
        if self.kind not in MODEL_CLASSES:
            raise ValueError(f"unknown model kind {self.kind!r}; known: {', '.join(MODEL_CLASSES)}")

    @property
    def args_key(self) -> str:
        """The checkpoint key that holds the constructor arguments."""
        return f"{self.kind}_kwargs"

    @property
    def cls(self) -> type:
        return MODEL_CLASSES[self.kind]

    def build(self) -> torch.nn.Module:
        return self.cls(**self.kwargs)


def objective_of(ckpt: dict) -> str:
    """The training objective a checkpoint records (`objective`); checkpoints from before objectives and
    released CroCo ones are "croco"."""
    return str(ckpt.get("objective") or "croco")


def model_spec_from_ckpt(ckpt: dict, path="checkpoint") -> ModelSpec:
    """The ModelSpec of a checkpoint's `model`: `vit_kwargs` -> a ViT; otherwise CroCo (`croco_args_from_ckpt`)."""
    if "vit_kwargs" not in ckpt:
        return ModelSpec("croco", croco_args_from_ckpt(ckpt, path))
    args = ckpt["vit_kwargs"]
    if not isinstance(args, dict):
        raise SlifeError(f"{path}: vit_kwargs is a {type(args).__name__}, expected a dict")
    args = dict(args)
    if isinstance(args.get("img_size"), list):
        args["img_size"] = tuple(args["img_size"])
    known = set(inspect.signature(VisionTransformer.__init__).parameters) - {"self"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise SlifeError(f"{path}: unknown VisionTransformer argument {unknown[0]!r} in the checkpoint")
    return ModelSpec("vit", args)


def key_mismatch(missing: list, unexpected: list) -> str:
    """'N missing key(s), first ...; M unexpected key(s), first ...' (one line, however many keys)."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), first {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    return "; ".join(parts)


def check_weights(sd: dict, own: dict, path, what: str, strict: bool = True) -> tuple[list, list]:
    """Check checkpoint weights `sd` against a model's state_dict `own` before loading them: a one-line
    SlifeError "{path}: {what} (...)" for a wrong shape, NaN/inf weights or, with `strict`, missing or
    unexpected keys (counted, first named). -> (missing, unexpected) keys."""
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    for k, v in sd.items():
        if k in own and (not torch.is_tensor(v) or tuple(v.shape) != tuple(own[k].shape)):
            raise SlifeError(f"{path}: {what} ({k} has shape {tuple(getattr(v, 'shape', ()))}, the model's is "
                             f"{tuple(own[k].shape)})")
    check_finite(sd, path)
    if strict and (missing or unexpected):
        raise SlifeError(f"{path}: {what} ({key_mismatch(missing, unexpected)})")
    return missing, unexpected


def check_finite(sd: dict, path) -> None:
    """SlifeError naming the first weight with NaN or inf (a diverged run's weights evaluate to nonsense)."""
    bad = [k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise SlifeError(f"{path}: weights contain NaN or inf ({len(bad)} tensor(s), first {bad[0]!r})")


def load_model(path, strict: bool = True, img_size=None, map_location="cpu") -> tuple[torch.nn.Module, dict]:
    """Build the checkpoint's network (CroCoNet, or the ViT of a dinov2/egomotion checkpoint, `ModelSpec`)
    from its arguments and load its `model` weights -> (model, ckpt).

    strict: missing or unexpected keys are errors (otherwise logged). Wrong shapes are always errors.
    Sin-cos buffers saved for another grid are replaced by the exact tables of the model's grid.
    img_size: set another default image size afterwards (`interpolate`)."""
    ckpt = load_checkpoint(path, map_location)
    sd = ckpt.get("model")
    if not isinstance(sd, dict):
        raise SlifeError(f"{path}: no 'model' state_dict in the checkpoint (keys: {', '.join(map(str, list(ckpt)[:8]))})")
    spec = model_spec_from_ckpt(ckpt, path)
    args, name = spec.kwargs, spec.cls.__name__
    try:
        model = spec.build()
    except (TypeError, ValueError) as e:
        raise SlifeError(f"{path}: cannot build {name} from its arguments {args}: {_first_line(e)}") from None
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DDP wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    own = model.state_dict()
    sd = dict(sd)
    for k in ("enc_pos_embed", "dec_pos_embed"):
        if k in sd and k in own and tuple(sd[k].shape) != tuple(own[k].shape):
            log.info("%s: %s saved for another grid %s; using the exact table %s", path, k,
                     tuple(sd[k].shape), tuple(own[k].shape))
            sd[k] = own[k]
    missing, unexpected = check_weights(sd, own, path, f"state_dict does not match {name}({args})", strict)
    if missing or unexpected:
        log.warning("%s: %d missing and %d unexpected keys ignored", path, len(missing), len(unexpected))
    model.load_state_dict(sd, strict=False)
    if img_size is not None:
        model.interpolate(img_size)
    return model, ckpt
