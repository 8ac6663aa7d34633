"""``ndops-train``: train, evaluate and sample from a config file (see :mod:`.builders`).

    ndops-train train CONFIG [--resume CHECKPOINT] [--set trainer.epochs=3 ...]
    ndops-train evaluate CONFIG --checkpoint CHECKPOINT [--split test] [--no-ema]
    ndops-train sample [CONFIG] --checkpoint CHECKPOINT [--out grid.png] [--sampler ddim]
                       [--steps 50] [--num-samples 16] [--seed 0] [--guidance-scale 1.0]

Multi-process: torchrun --nproc-per-node K -m ndops.models.training.cli train CONFIG
"""
import argparse
import json
import math
import os
import sys


from . import builders
from .checkpoint import load_checkpoint, seed_everything
from .diffusion import generate, grid_columns, sample_from_checkpoint, save_sample_grid
from .trainer import Trainer


def _parser():
    parser = argparse.ArgumentParser(
        prog="ndops-train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train, evaluate and sample ndops models from a YAML or JSON config.",
        epilog="\n".join(__doc__.splitlines()[2:]))
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model described by a config file")
    train.add_argument("config")
    train.add_argument("--resume", help="a checkpoint (last.pt) to continue exactly")
    evaluate = commands.add_parser("evaluate", help="metrics of a checkpoint on a data split")
    evaluate.add_argument("config")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--split", default="val", choices=("train", "val", "test"))
    sample = commands.add_parser("sample", help="draw samples from a diffusion checkpoint")
    sample.add_argument("config", nargs="?", help="optional: rebuild the model from this "
                        "config instead of the checkpoint's record")
    sample.add_argument("--checkpoint", required=True)
    sample.add_argument("--out", help="PNG grid to write (default: samples/ of the run)")
    sample.add_argument("--sampler", default="ddim", choices=("ddpm", "ddim"))
    sample.add_argument("--steps", type=int, default=50)
    sample.add_argument("--eta", type=float)
    sample.add_argument("--num-samples", type=int, default=16)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--guidance-scale", type=float, default=1.0)
    sample.add_argument("--projection", default="slice", choices=("slice", "max", "mean"))
    for command in (train, evaluate, sample):
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override a config entry, e.g. trainer.epochs=3")
    for command in (evaluate, sample):
        command.add_argument("--no-ema", action="store_true",
                             help="use the trained weights, not their EMA")
    return parser


def _load(args):
    config = builders.load_config(args.config)
    builders.apply_overrides(config, args.set)
    return config


def _train(args):
    config = _load(args)
    settings = builders.trainer_config(config)
    data = builders.build_data(config)
    seed_everything(settings.seed)          # the model's initial weights follow the seed
    model, task = builders.build_model(config)
    optimizer, scheduler = builders.build_optimizer(config, model, settings,
                                                    len(_as_sized(data["train"])))
    trainer = Trainer(model, task, optimizer, scheduler, settings)
    trainer.fit(data["train"], data["val"], resume=args.resume)
    result = {"run_dir": trainer.run_dir, "best": trainer.best,
              "last": trainer.history[-1] if trainer.history else None}
    if data["test"] is not None:
        result["test"] = trainer.evaluate(data["test"])
    if trainer.distributed.is_main:
        print(json.dumps(result, indent=1, default=_json_number))
    return result


def _as_sized(data):
    return data[0] if isinstance(data, (tuple, list)) else data


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def _weights(state, use_ema):
    return state["ema"]["module"] if use_ema and state.get("ema") else state["model"]


def _evaluate(args):
    config = _load(args)
    data = builders.build_data(config)
    if data[args.split] is None:
        raise ValueError(f"ndops-train: the config's data has no {args.split!r} split")
    model, task = builders.build_model(config)
    state = load_checkpoint(args.checkpoint)
    model.load_state_dict(_weights(state, not args.no_ema))
    settings = builders.trainer_config(config)
    settings.ema_decay, settings.progress = None, False
    metrics = Trainer(model, task, config=settings).evaluate(data[args.split])
    print(json.dumps(metrics, indent=1, default=_json_number))
    return metrics


def _sample(args):
    out = args.out or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        args.checkpoint))), "samples", f"sample_{args.sampler}{args.steps}_seed{args.seed}.png")
    if args.config is None:
        samples = sample_from_checkpoint(
            args.checkpoint, args.num_samples, args.sampler, args.steps, args.eta,
            guidance_scale=args.guidance_scale, seed=args.seed, out=out,
            use_ema=not args.no_ema, projection=args.projection)
    else:
        config = _load(args)
        model, _ = builders.build_model(config)
        state = load_checkpoint(args.checkpoint)
        model.load_state_dict(_weights(state, not args.no_ema))
        shape = (state.get("task_state") or {}).get("sample_shape")
        if shape is None:
            raise ValueError(f"ndops-train: {args.checkpoint} records no sample shape (not a "
                             "diffusion checkpoint?)")
        model.eval()
        samples = generate(model, args.num_samples, shape, args.sampler, args.steps, args.eta,
                           guidance_scale=args.guidance_scale, seed=args.seed)
        save_sample_grid(samples, out, nrow=grid_columns(model, args.num_samples),
                         projection=args.projection)
    print(f"wrote {tuple(samples.shape)} samples to {out}")
    return samples


def run(argv):
    """Runs one ``ndops-train`` command line (a list of arguments) and returns its result
    (train: run folder, best and last metrics; evaluate: metrics; sample: the samples)."""
    args = _parser().parse_args(argv)
    return {"train": _train, "evaluate": _evaluate, "sample": _sample}[args.command](args)


def main(argv=None):
    """Entry point of the ``ndops-train`` console script: exit status 0, or 2 with a one-line
    message for a bad config, missing or damaged files, or bad data."""
    try:
        run(sys.argv[1:] if argv is None else argv)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"ndops-train: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if "cannot read checkpoint" not in str(err):
            raise
        print(f"ndops-train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
