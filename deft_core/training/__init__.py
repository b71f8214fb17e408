"""Guided LoRA training: L_DEFT = L_base - omega * s_theta for SFT, DPO and PRO base losses."""
