"""The study: config validation, the patient table and the training roles of each variant."""
