"""ct2mr: CT-to-MR synthesis with MR-GAN (Jin et al., 2018) as a Snakemake pipeline.

Conventions used throughout the package (see DEVELOPING.md):

* Images are SimpleITK images in physical space (mm). After ingest every volume
  is in LPS orientation (``sitk.DICOMOrient(img, "LPS")``): +x patient left,
  +y posterior, +z superior.  ``sitk.GetArrayFromImage`` therefore gives arrays
  indexed ``[z, y, x]``: axial slices are ``array[k]``, displayed with anterior
  at the top and the patient's right on the left of the image (radiological view).
* CT values are Hounsfield units until the window stage; windowed CT and
  normalised MR are uint8 in [0, 255].
* Every output file is written atomically (see :mod:`ct2mr.io.atomic`).
"""

__version__ = "0.1.0"
