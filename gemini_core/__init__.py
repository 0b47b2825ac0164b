"""Gemini Compression Studio engine: scenarios, compression, measurement, sweeps, store, export."""
