"""From a raw scan to 256x256 slices: ingest, resample, skull masking, registration, window/normalise, slices."""
