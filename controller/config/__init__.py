"""Configuration: the model catalog, LoRA adapters, site settings and the .env file. Pure reading and validation."""
