"""FSDP2 and Ulysses context parallel on 2 CPU processes (Gloo) against a single-process reference.

One ``torch.multiprocessing.spawn`` of 2 ranks runs every scenario (process start-up dominates the
cost); each rank saves its losses, gathered gradients and outputs, and the tests compare them with
the same tiny DiT run in this process. Errors are relative: ||a - b|| / ||b|| per tensor, worst one.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.nn.functional as F
from conftest import torch_threads

from openwan.checkpoint.random_init import TINY_DIT, randomize_
from openwan.errors import InputError
from openwan.models.dit import WanDiT

WORLD = 2
TOL = 1e-5


def _model() -> WanDiT:
    return randomize_(WanDiT(TINY_DIT), seed=0)


def _batch() -> tuple[torch.Tensor, ...]:
    """Latents [2, 16, 2, 8, 8] -> grid (2, 4, 4) = 32 tokens; 7 text tokens; a random target."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 2, 8, 8, generator=g)
    t = torch.tensor([250.0, 800.0])
    ctx = torch.randn(2, 7, TINY_DIT.text_dim, generator=g)
    target = torch.randn(x.shape, generator=g)
    return x, t, ctx, target


def _rel(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-30) -> float:
    """||a - b|| / ||b||, with ||b|| taken as at least ``floor``."""
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(floor)).item()


# A parameter whose gradient nearly cancels (a key bias under qk-norm: ~1e-3 of the whole gradient) carries
# float32 summation noise of the size of its terms, not of its sum, so its error is measured against at least
# this fraction of the whole gradient's norm. A wrong reduction (a missing average, a lost shard) is still
# off by ~1 relative, far above TOL.
GRAD_NORM_FLOOR = 1e-2


def _worst(grads: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> tuple[float, str]:
    assert grads.keys() == ref.keys()
    floor = GRAD_NORM_FLOOR * torch.stack([g.float().norm() for g in ref.values()]).norm().item()
    return max((_rel(grads[k], ref[k], floor), k) for k in ref)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full gradients by name; FSDP's sharded DTensor gradients are gathered (a collective)."""
    out = {}
    for name, p in model.named_parameters():
        g = p.grad
        out[name] = (g.full_tensor() if hasattr(g, "full_tensor") else g).detach().clone()
    return out


def _train_step(model: WanDiT, batch) -> tuple[float, dict[str, torch.Tensor]]:
    x, t, ctx, target = batch
    loss = F.mse_loss(model(x, t, ctx), target)
    loss.backward()
    return loss.item(), _grads(model)


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from openwan.distributed import (
        apply_context_parallel,
        apply_fsdp,
        average_gradients,
        build_mesh,
        destroy,
        full_state_dict,
        init_distributed,
        remove_context_parallel,
    )

    env = init_distributed("cpu")
    assert (env.rank, env.world_size, env.backend) == (rank, WORLD, "gloo") and init_distributed() is env
    dp_mesh, cp_mesh = build_mesh(env, dp=2, cp=1), build_mesh(env, dp=1, cp=2)
    batch = _batch()
    res: dict = {}

    # (a) FSDP as data parallel: each rank trains on its own sample; FSDP averages the gradients.
    model = apply_fsdp(_model(), dp_mesh)
    res["fsdp"] = _train_step(model, tuple(b[rank:rank + 1] for b in batch))
    res["export"] = full_state_dict(model)
    try:
        average_gradients(model, cp_mesh["cp"])
    except InputError as e:
        res["avg_on_fsdp_error"] = str(e)
    try:
        apply_fsdp(_model(), dp_mesh, cpu_offload=True)
    except InputError as e:
        res["offload_error"] = str(e)

    # (b, c) Ulysses CP on the same batch, gradients averaged explicitly; (c) with checkpointing.
    for key, ckpt in (("cp", False), ("cp_ckpt", True)):
        model = apply_context_parallel(_model(), cp_mesh["cp"])
        model.gradient_checkpointing = ckpt
        loss, _ = _train_step(model, batch)
        average_gradients(model, cp_mesh["cp"])
        res[key] = (loss, _grads(model))

    # (d) CP and FSDP over the same 2 ranks: FSDP's reduce-scatter does the averaging. Both orders of
    # applying them; the second also with gradient checkpointing.
    model = apply_fsdp(apply_context_parallel(_model(), cp_mesh["cp"]), cp_mesh)
    res["fsdp_cp"] = _train_step(model, batch)
    model = apply_context_parallel(apply_fsdp(_model(), cp_mesh), cp_mesh["cp"])
    model.gradient_checkpointing = True
    res["fsdp_cp_ckpt"] = _train_step(model, batch)

    # Mixed precision: bf16 compute, fp32 master weights and gradient reduction.
    model = apply_fsdp(_model(), dp_mesh, param_dtype=torch.bfloat16)
    res["fsdp_bf16"] = _train_step(model, tuple(b[rank:rank + 1] for b in batch))

    # (e) CP inference: every rank gets the full output; removing CP restores the plain model.
    model = apply_context_parallel(_model(), cp_mesh["cp"])
    with torch.no_grad():
        res["cp_infer"] = model(*batch[:3])
        try:  # 3 tokens (grid 1x1x3) do not split over 2 ranks; raised before any communication
            model(torch.randn(1, 16, 1, 2, 6), batch[1][:1], batch[2][:1])
        except InputError as e:
            res["odd_tokens_error"] = str(e)
        remove_context_parallel(model)
        res["removed_hooks"] = sum(len(b._forward_pre_hooks) for b in model.blocks) + len(model.head._forward_hooks)
        res["removed_infer"] = model(*batch[:3])

    torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    destroy()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _per_sample_step(dtype: torch.dtype) -> tuple[float, dict[str, torch.Tensor]]:
    """Data-parallel reference: mean loss and fp32 gradients over the samples, one sample per step.
    (One step on the batch of 2 gives the same numbers up to summation order, but the near-cancelling
    cross-attention bias gradients then differ by ~5e-5 relative in fp32.)"""
    batch, losses, grads = _batch(), [], []
    for i in range(WORLD):
        loss, g = _train_step(_model().to(dtype), tuple(b[i:i + 1] for b in batch))
        losses.append(loss)
        grads.append(g)
    return sum(losses) / WORLD, {k: sum(g[k].float() for g in grads) / WORLD for k in grads[0]}


@pytest.fixture(scope="module")
def reference() -> dict:
    # one thread, as each rank: CPU kernels (oneDNN/AMX bf16 in particular) block their sums by thread count
    with torch_threads(1):
        model = _model()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        batch = _batch()
        loss, grads = _train_step(model, batch)
        with torch.no_grad():
            out = model(*batch[:3])
        return dict(loss=loss, grads=grads, out=out, state=state,
                    per_sample=_per_sample_step(torch.float32), per_sample_bf16=_per_sample_step(torch.bfloat16))


def test_fsdp_data_parallel_matches_single_process(ranks, reference):
    # Each rank trained on its own sample; FSDP's reduce-scatter averages the gradients.
    ref_loss, ref_grads = reference["per_sample"]
    assert abs(sum(r["fsdp"][0] for r in ranks) / WORLD - ref_loss) <= TOL * ref_loss
    assert abs(ref_loss - reference["loss"]) <= TOL * ref_loss  # the mean of per-sample MSEs is the batch MSE
    for r in ranks:
        err, name = _worst(r["fsdp"][1], ref_grads)
        assert err <= TOL, f"worst gradient {name}: rel err {err:.2e}"


def test_fsdp_full_state_dict_export(ranks, reference):
    export = ranks[0]["export"]
    assert list(export) == list(reference["state"])  # official key names, same order
    for k, v in reference["state"].items():
        assert export[k].device.type == "cpu" and torch.equal(export[k], v), k
    assert ranks[1]["export"] == {}


@pytest.mark.parametrize("key", ["cp", "cp_ckpt", "fsdp_cp", "fsdp_cp_ckpt"])
def test_context_parallel_training_matches_single_process(ranks, reference, key):
    for r in ranks:
        loss, grads = r[key]
        assert abs(loss - reference["loss"]) <= TOL * reference["loss"], (loss, reference["loss"])
        err, name = _worst(grads, reference["grads"])
        assert err <= TOL, f"{key}: worst gradient {name}: rel err {err:.2e}"


def test_fsdp_bf16_mixed_precision(ranks, reference):
    # bf16 all-gathered weights compute exactly like model.to(bf16) (fp32 residual stream kept, inputs
    # not cast), so the loss matches to fp32 precision. Gradients, averaged in fp32 into the fp32
    # master gradients, match to bf16 precision: the text embedding's gradient sums the per-block
    # bf16 contributions in another order under FSDP (~1 bf16 ulp, 4e-3); all others agree to 1e-5.
    ref_loss, ref_grads = reference["per_sample_bf16"]
    assert abs(sum(r["fsdp_bf16"][0] for r in ranks) / WORLD - ref_loss) <= TOL * ref_loss
    for r in ranks:
        grads = r["fsdp_bf16"][1]
        assert all(g.dtype == torch.float32 for g in grads.values())
        err, name = _worst(grads, ref_grads)
        assert err <= 1e-2, f"worst gradient {name}: rel err {err:.2e}"
        rest = {k: v for k, v in grads.items() if not k.startswith("text_embedding.")}
        err, name = _worst(rest, {k: ref_grads[k] for k in rest})
        assert err <= TOL, f"worst gradient {name}: rel err {err:.2e}"


def test_context_parallel_inference_matches_single_process(ranks, reference):
    for r in ranks:
        assert _rel(r["cp_infer"], reference["out"]) <= TOL
        assert r["removed_hooks"] == 0
        assert _rel(r["removed_infer"], reference["out"]) <= TOL


def test_distributed_errors_are_input_errors(ranks):
    for r in ranks:
        assert "3 video tokens" in r["odd_tokens_error"] and "not divisible by 2" in r["odd_tokens_error"]
        assert "FSDP already averages" in r["avg_on_fsdp_error"]
        assert "cpu_offload needs an accelerator" in r["offload_error"]


def test_cp_shape_checks_name_the_numbers():
    from openwan.distributed import check_cp_shapes

    check_cp_shapes(heads=12, cp=4, tokens=32760)
    with pytest.raises(InputError, match=r"33 video tokens .* not divisible by 2"):
        check_cp_shapes(heads=12, cp=2, tokens=33)
    with pytest.raises(InputError, match=r"12 attention heads .* not divisible by 5"):
        check_cp_shapes(heads=12, cp=5, tokens=40)


def test_only_ulysses_mode_is_accepted():
    from openwan.distributed import apply_context_parallel

    with pytest.raises(InputError, match="unknown context-parallel mode 'ring'"):
        apply_context_parallel(_model(), None, mode="ring")


def test_single_process_env(monkeypatch):
    from openwan.distributed import barrier, build_mesh, destroy, init_distributed, is_main

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    destroy()
    try:
        env = init_distributed("cpu")
        assert (env.rank, env.world_size, env.local_rank, env.backend) == (0, 1, 0, None)
        assert env.device == torch.device("cpu") and init_distributed() is env
        assert not torch.distributed.is_initialized() and is_main()
        barrier()
        assert build_mesh(env, dp=1, cp=1) is None
        with pytest.raises(InputError, match=r"dp × cp = 1 × 2 = 2 must equal the world size 1"):
            build_mesh(env, dp=1, cp=2)
        monkeypatch.setenv("RANK", "0")
        destroy()
        with pytest.raises(InputError, match="partial torchrun environment"):
            init_distributed("cpu")
    finally:
        destroy()
