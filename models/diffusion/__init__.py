"""``ndops.models.diffusion``: noise schedules, training losses and DDPM/DDIM samplers."""
from .gaussian import GaussianDiffusion, LOSS_TYPES, PREDICTION_TYPES
from .samplers import SAMPLERS, timestep_sequence
from .schedules import (available_schedules, betas_from_alpha_bar, get_schedule,
                        register_schedule, schedule_tensors)

__all__ = ["GaussianDiffusion", "PREDICTION_TYPES", "LOSS_TYPES", "SAMPLERS",
           "timestep_sequence", "available_schedules", "betas_from_alpha_bar", "get_schedule",
           "register_schedule", "schedule_tensors"]
