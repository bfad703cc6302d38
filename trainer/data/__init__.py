"""Data: reading slides, making masks, preparing patch folders, datasets and sketches."""
