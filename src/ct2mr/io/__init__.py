"""File formats and safe writing: images (NIfTI/MHA/NRRD/DICOM), DICOM series discovery, atomic outputs, TSV tables."""
