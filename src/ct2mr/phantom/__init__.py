"""The synthetic phantom cohort (CT in HU, T2-like MR, known affine) and its scanner-like DICOM export, for the demo and tests."""
