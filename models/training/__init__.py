"""``ndops.models.training``: a trainer with checkpoints, resume, AMP, EMA and DDP, and the ``ndops-train`` CLI."""
from .checkpoint import (build_model, describe_model, load_checkpoint, load_model,
                         preserved_rng, seed_everything)
from .denoising import denoiser_arguments, fit_denoiser
from .diffusion import DiffusionTask, sample_from_checkpoint, save_sample_grid
from .ema import EMA
from .metrics import MetricTotals, accuracy, denoising_psnr, dice, iou, psnr
from .settings import TrainerConfig
from .tasks import (ClassificationTask, RegressionTask, SegmentationTask, SupervisedTask, Task,
                    split_batch)
from .trainer import Trainer

__all__ = ["Trainer", "TrainerConfig", "Task", "SupervisedTask", "ClassificationTask",
           "SegmentationTask", "RegressionTask", "DiffusionTask", "EMA", "MetricTotals",
           "accuracy", "dice", "iou", "psnr", "denoising_psnr", "split_batch", "load_checkpoint",
           "load_model", "build_model", "describe_model", "seed_everything", "preserved_rng",
           "sample_from_checkpoint", "save_sample_grid", "fit_denoiser",
           "denoiser_arguments"]
