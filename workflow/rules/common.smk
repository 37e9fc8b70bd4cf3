# Shared set-up: the validated config, the patient table and the input functions.
# No rule lives here; logic lives in src/ct2mr.
import functools
import glob
import json
import os
import re
import shlex

from snakemake.exceptions import WorkflowError

from ct2mr.cohort.config import check_config_files, check_results_writable, validate_all
from ct2mr.cohort.patients import IMAGE_2D_SUFFIXES, VAL_ROLE
from ct2mr.training.roles import TRAIN_ROLES, variant_roles
from ct2mr.errors import InputError
from ct2mr.evaluation.report_tables import ReportNumbers
from ct2mr.pipeline.cluster_resources import RULE_RESOURCES
from ct2mr.pipeline.file_lists import write_file_list
from ct2mr.pipeline.jobenv import export_job_environment
from ct2mr.pipeline.snakemake_patches import cache_function_params, fix_list_changes_params
from ct2mr.training.folds import fold_roles, write_folds
from ct2mr.training.settings import NON_RESULT_FIELDS, seeds_of

export_job_environment(
    src_dir=Path(workflow.basedir) / "src",
    using_conda="conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method},
)
# `--list-changes params` lists only outputs whose params changed (a Snakemake 9 bug)
fix_list_changes_params()
# Snakemake inspects every input/param/resource function's signature each time it calls it
cache_function_params()

try:  # the same checks as `ct2mr check-config` (ct2mr.cohort.config.validate_all)
    check_config_files(workflow.configfiles)  # a target after --configfile is read as a config file
    VALID = validate_all(config, source=", ".join(map(str, workflow.configfiles)) or "config")
    #: every variant is trained once per seed: results/models/{variant}/seed{seed}/
    SEEDS = seeds_of(config["training"], source="config")
except InputError as exc:
    raise WorkflowError(f"ct2mr: invalid input: {exc}") from None


# Before the first job (not in a dry run): a results/ the workflow cannot write in gets one line.
onstart:
    try:
        check_results_writable("results")
    except InputError as exc:
        raise WorkflowError(f"ct2mr: {exc}") from None


PATIENTS = {p.patient: p for p in VALID.patients}
#: rows naming their own phantom scans (ct2mr.cohort.patients.phantom_paths): the phantom rules make only theirs
PHANTOM = sorted(p for p, r in PATIENTS.items() if r.is_phantom)
#: k-fold cross-validation over the paired patients (evaluation.folds; 0 = the table's own split)
FOLDS = int(config["evaluation"]["folds"])
#: the cross-validated patients (paired_train and paired_test rows together) -> their fold
FOLD_OF = VALID.folds
FOLD_IDS = list(range(FOLDS))
#: where the folds are recorded; the training jobs read it to know their test patients
FOLDS_TSV = "results/metrics/folds.tsv"
TRAINING_SETTINGS = VALID.training

VARIANTS = list(config["training"]["variants"])
#: variants that train Syn_CT too (they can reconstruct the CT: Figure 7)
CYCLE_VARIANTS = [v for v in VARIANTS if v in ("unpaired", "mrgan")]
#: the seed whose models the image figures (Figures 5-7) show: the lowest
FIG_SEED = min(SEEDS)
#: one model per variant and seed, and per fold under cross-validation
MODEL = "results/models/{variant}/fold{fold}/seed{seed}" if FOLDS else "results/models/{variant}/seed{seed}"
#: the name of a training job's log and benchmark
TRAIN_JOB = "{variant}_fold{fold}_seed{seed}" if FOLDS else "{variant}_seed{seed}"
SYNTH = "results/synth/{variant}/seed{seed}"

#: 2D image pools (ct_only / mr_only rows naming PNG/JPEG images of any size)
POOL = sorted(p for p, r in PATIENTS.items() if r.is_pool)
#: registered 2D slice pairs (PNG)
PNG = sorted(p for p, r in PATIENTS.items() if r.is_png and not r.is_pool)
VOLUME = sorted(p for p in PATIENTS if p not in PNG and p not in POOL)
#: 3D patients with both scans: registration runs for these
PAIRED_3D = sorted(p for p in VOLUME if PATIENTS[p].has_ct and PATIENTS[p].has_mr)
#: 3D patients with one scan
CT_ONLY_3D = sorted(p for p in VOLUME if PATIENTS[p].has_ct and not PATIENTS[p].has_mr)
MR_ONLY_3D = sorted(p for p in VOLUME if PATIENTS[p].has_mr and not PATIENTS[p].has_ct)
#: test patients: every cross-validated patient under k-fold (each by its own fold's models), else paired_test
TEST = sorted(FOLD_OF) if FOLDS else sorted(p for p, r in PATIENTS.items() if r.role == "paired_test")
TRAIN = sorted(p for p, r in PATIENTS.items() if r.role in TRAIN_ROLES or p in FOLD_OF)
#: held-out patients scored during training (validation MAE in losses.tsv), never trained on
VAL = sorted(p for p, r in PATIENTS.items() if r.role == VAL_ROLE)
PRE = "results/preprocessed/{patient}"

# Under SLURM one patient's preprocessing (phantom scans -> prepare -> register -> slices)
# is one group job, one sbatch: the groups are assigned in profiles/slurm/config.yaml
# (`groups:`, `group-components:`), not here, because a group costs Snakemake planning
# time even where it is ignored (local runs): 1.3 s more for 200 patients (bench/results/dag_scale.md).


def one_of(names):
    """Regex matching exactly these wildcard values (and nothing when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


wildcard_constraints:
    patient="[A-Za-z0-9][A-Za-z0-9_.-]*",
    modality="ct|mr",
    variant="paired|unpaired|mrgan|regression",
    seed="[0-9]+",
    fold="[0-9]+",


def raw_scan(modality):
    """Input function: the raw scan of the patient's ``modality`` ("ct" | "mr"), as listed in the patient table."""

    def raw(wildcards):
        path = getattr(PATIENTS[wildcards.patient], modality)
        if path is None:
            raise WorkflowError(f"patient {wildcards.patient} has no {modality.upper()} scan")
        return path

    return raw


def series_arg(modality):
    """Param function: ` --series SEL` (shell-quoted) when the patient table chooses a DICOM
    series of the patient's ``modality``, else ''."""

    def arg(wildcards):
        sel = PATIENTS[wildcards.patient].series_of(modality)
        return f" --series {shlex.quote(sel)}" if sel else ""

    return arg


def truth_file(wildcards):
    """Ground-truth affine (JSON) when the table gives one, for the TRE."""
    truth = PATIENTS[wildcards.patient].truth
    return [truth] if truth else []


def spaced(values):
    """[1, 1, 1] -> '1 1 1' for a CLI flag taking several numbers."""
    return " ".join(str(v) for v in values)


def preprocess_outputs():
    """Every patient's slice file and QA images.

    The QA images are listed although the jobs that write them are planned for the slices
    anyway: Snakemake regenerates a missing output only when it is requested (a deleted
    masking_qa_*.png would otherwise stay missing, and the report would lack it); the
    registration QA JSON files are requested through the registration table's list.
    """
    out = expand("results/slices/{patient}.npz", patient=sorted(PATIENTS))
    for p in VOLUME:
        r = PATIENTS[p]
        if r.has_ct:
            out.append(f"{PRE.format(patient=p)}/masking_qa_ct.png")
        if r.has_mr:
            out.append(f"{PRE.format(patient=p)}/masking_qa_mr.png")
    out += expand("results/preprocessed/{patient}/registration_qa.png", patient=PAIRED_3D)
    if PAIRED_3D:
        out.append("results/report_tables/registration.html")
    return out


def all_outputs():
    """The default target: preprocessing, models, synthesis, metrics and figures."""
    out = preprocess_outputs()
    out += model_files("syn_mr.pt", "losses.tsv", "loss_curve.png")
    if TEST:
        out += expand(f"{SYNTH}/{{patient}}_mr.nii.gz", variant=VARIANTS, seed=SEEDS, patient=TEST)
        out += expand("results/report_tables/{table}.html", table=["per_patient", "summary", "table1"])
        out.append("results/report_tables/comparisons.html")
        out += ["results/report_tables/qc.html", "results/report_tables/dice_correlation.html"]
        if TEST_3D and SEGMENT:
            out.append("results/figures/tissues.png")
        out += figure_outputs()
    return out


def model_files(*files):
    """The given files of every model: each variant and seed (and fold under cross-validation)."""
    return expand(f"{MODEL}/{{file}}", variant=VARIANTS, seed=SEEDS, fold=FOLD_IDS, file=files)


def patient_model(file):
    """Input function of the synthesis rules: ``file`` of the model that synthesizes the job's
    patient (under cross-validation, the model of the patient's own fold: it never saw the patient)."""

    def path(wildcards):
        fold = FOLD_OF.get(wildcards.patient, 0)
        return f"{MODEL}/{file}".format(variant=wildcards.variant, seed=wildcards.seed, fold=fold)

    return path


# --- used by evaluate.smk and figures.smk ---
#: the comparison declared before the run (evaluation.primary): tested at 0.05, every other row Holm-adjusted
PRIMARY = config["evaluation"]["primary"]
PRIMARY_ARGS = f"--primary {PRIMARY['metric']} {PRIMARY['variant']} {PRIMARY['baseline']}"
#: the variant compared with each baseline in comparisons.tsv: the primary comparison's
COMPARE_VARIANT = PRIMARY["variant"]
#: baselines of the difference figures (every other configured variant)
COMPARE_BASELINES = [v for v in VARIANTS if v != COMPARE_VARIANT] if COMPARE_VARIANT in VARIANTS else []
#: volume test patients: the 3D evaluation (evaluate.smk) runs for these; 2D PNG pairs have no volume
TEST_3D = [p for p in TEST if p in PAIRED_3D]
#: tissue segmentation of the real and synthetic MR (evaluation.segmentation; Atropos settings are
#: tracked params of `segment_real` and `evaluate_volume`)
SEGMENTATION = config["evaluation"]["segmentation"]
SEGMENT = bool(SEGMENTATION["enabled"])
SEGMENTATION_ARGS = (
    f"--contrast {SEGMENTATION['contrast']} --iterations {SEGMENTATION['iterations']}"
    f" --mrf-smoothing {SEGMENTATION['mrf_smoothing']} --mrf-radius {SEGMENTATION['mrf_radius']}"
    f" --downsample {SEGMENTATION['downsample']}"
)
#: the patient of the tissue-map figure: the first volume test patient
TISSUE_PATIENT = TEST_3D[0] if TEST_3D else None


def synth_slices(variant):
    """The synthesized slice files of one variant for every test patient and seed."""
    return expand(f"{SYNTH}/{{patient}}_slices.npz", variant=variant, seed=SEEDS, patient=TEST)


def volume_tables(variant):
    """The one-row 3D metric tables (`evaluate_volume`) of one variant for every volume test patient and seed."""
    return expand(
        "results/metrics/volume/{variant}/seed{seed}/{patient}.tsv", variant=variant, seed=SEEDS, patient=TEST_3D
    )


def volume_flags(wildcards, input):
    """`--volume-metrics @LIST ...` of `evaluate`: one list per variant (a removed variant changes only the input set)."""
    return "--volume-metrics " + " ".join(f"@{shlex.quote(f)}" for f in input.volume)


# --- used by the rules that read many files (lists.smk writes the lists) ---
def file_list(name):
    """Path of the list file ``name`` (an input of the job that reads it as @path)."""
    return f"results/lists/{name}.txt"


# --- used by figures.smk ---
#: the variant shown alone in Figure 5
MAIN_VARIANT = "mrgan" if "mrgan" in VARIANTS else VARIANTS[-1]


def figure_outputs():
    """Figures 5-7 per test patient, difference maps, per-patient metrics and loss curves."""
    out = expand("results/figures/{kind}_{patient}.png", kind=["synthesis", "variants"], patient=TEST)
    if CYCLE_VARIANTS:
        out += expand("results/figures/cycle_{patient}.png", patient=TEST)
    out += expand(
        "results/figures/difference_{variant}_vs_{baseline}.png", variant=COMPARE_VARIANT, baseline=COMPARE_BASELINES
    )
    return out + ["results/figures/metrics.png", "results/figures/losses.png"]


# --- used by figures.smk (fig_patient) ---
#: the per-patient figures (one job per test patient: planning time grows with the number of
#: jobs, bench/results/dag_scale.md): Figure 5 (the main variant), Figure 6 (every variant),
#: Figure 7 (the variants that reconstruct the CT, when any is trained)
PATIENT_FIGURES = {
    "synthesis": ("Figure 5: synthesis", "Figure 5", [MAIN_VARIANT]),
    "variants": ("Figure 6: variants", "Figure 6", VARIANTS),
    **({"cycle": ("Figure 7: cycle", "Figure 7", CYCLE_VARIANTS)} if CYCLE_VARIANTS else {}),
}


def patient_figures_shell():
    """One `ct2mr figures` command per figure of PATIENT_FIGURES, each with its log, run in turn."""
    return " && ".join(
        f"python -m ct2mr figures --kind {kind} --slices {{input.slices:q}}"
        f" --synth {' '.join(f'{{input.{v}:q}}' for v in variants)} --output {{output.{kind}:q}} > {{log.{kind}:q}} 2>&1"
        for kind, (_, _, variants) in PATIENT_FIGURES.items()
    )


# --- used by phantom.smk ---
def phantom_args(wildcards):
    c = config["phantom"]
    return (
        f"--patient {wildcards.patient} --seed {c['seed']}"
        f" --ct-spacing {spaced(c['ct_spacing_mm'])} --mr-spacing {spaced(c['mr_spacing_mm'])}"
        f" --fov {spaced(c['fov_mm'])} --max-rotation-deg {c['max_rotation_deg']}"
        f" --max-translation-mm {c['max_translation_mm']} --max-scale {c['max_scale']}"
    )


# --- used by register.smk ---
# Params that a config key reaches must be plain values computed from the config
# (or the wildcards), never functions of input/output: Snakemake records only those,
# so only their changes rerun a job (src/ct2mr/pipeline/rerun_scope.py, tests/test_rerun_scope.py).
REGISTRATION_ARGS = (
    f"--backend {config['registration']['backend']} --mi-bins {config['registration']['mi_bins']}"
    f" --sampling-fraction {config['registration']['sampling_fraction']}"
    f" --iterations {config['registration']['iterations']}"
    f" --shrink-factors {spaced(config['registration']['shrink_factors'])} --seed {config['registration']['seed']}"
)


def truth_flag(wildcards):
    """``--truth FILE`` (shell-quoted) when the patient table gives a ground-truth affine, else ''."""
    return " ".join(f"--truth {shlex.quote(t)}" for t in truth_file(wildcards))


# --- used by slices.smk ---
def volume_slice_inputs(wildcards):
    """The images of a volume patient's `slices` job: CT in HU on the 1 mm grid and/or the MR
    (registered onto it, or on its own grid for an MR-only patient), the reference grid's masks
    and the head mask the MR is normalised in."""
    pre = PRE.format(patient=wildcards.patient)
    r = PATIENTS[wildcards.patient]
    ref = "ct" if r.has_ct else "mr_native"
    inputs = {"head": f"{pre}/{ref}_head_mask.nii.gz", "brain": f"{pre}/{ref}_brain_mask.nii.gz"}
    if r.has_ct:
        inputs["ct"] = f"{pre}/ct.nii.gz"
    if r.has_mr:
        inputs["mr"] = f"{pre}/mr.nii.gz" if r.has_ct else f"{pre}/mr_native.nii"
    return inputs


def image_flags(wildcards, input, output):
    """--ct/--mr flags of `ct2mr normalise-slices` with the images they write (ct_window, mr_norm),
    shell-quoted; the MR is normalised inside the head mask of its grid (the CT's once registered)."""
    q = shlex.quote
    flags = []
    if "ct" in input.keys():
        flags.append(f"--ct {q(input.ct)} --ct-window {q(output.ct_window)}")
    if "mr" in input.keys():
        flags.append(f"--mr {q(input.mr)} --mr-mask {q(input.head)} --mr-norm {q(output.mr_norm)}")
    return " ".join(flags)


#: intensity flags of `ct2mr normalise-slices` per scan (a tracked param: only the rules whose
#: patients have that scan rerun when its setting changes)
CT_WINDOW_FLAGS = f"--width-hu {config['window']['ct_width_hu']} --level-hu {config['window']['ct_level_hu']}"
MR_NORM_FLAGS = f"--percentiles {spaced(config['window']['mr_percentiles'])}"

#: params of the three volume `slices` rules (slices.smk) besides `window`; config values are tracked params
SLICES_PARAMS = dict(
    role=lambda w: PATIENTS[w.patient].role,
    images=image_flags,
    size=config["slices"]["size"],
    min_voxels=config["slices"]["min_brain_voxels"],
    min_slices=config["slices"]["min_slices"],
)


def slices_logs():
    """The logs of a volume `slices` job: its whole output (the slices stage's log) and the window stage's."""
    return dict(job="results/logs/slices/{patient}.log", window="results/logs/window/{patient}.log")


def png_files(wildcards):
    """The image files behind a patient's ct/mr sources (folder or glob), so edits retrigger."""
    r = PATIENTS[wildcards.patient]
    files = []
    for src in (r.ct, r.mr):
        if src is None:
            continue
        if any(c in src for c in "*?["):
            files += sorted(f for f in glob.glob(src) if os.path.isfile(f))
        elif os.path.isdir(src):
            files += sorted(str(f) for f in Path(src).iterdir() if f.suffix.lower() in IMAGE_2D_SUFFIXES)
        else:
            files.append(src)
    return files


def pool_source(wildcards):
    """The folder or glob of a pool row (shell-quoted: the command expands the glob itself)."""
    r = PATIENTS[wildcards.patient]
    return shlex.quote(r.ct if r.ct is not None else r.mr)


def png_flags(wildcards):
    """--ct/--mr flags of `ct2mr slices-png`: the row's folders or globs, shell-quoted."""
    r = PATIENTS[wildcards.patient]
    return " ".join(f"--{m} {shlex.quote(getattr(r, m))}" for m in ("ct", "mr") if getattr(r, m))


# --- used by train.smk ---
def training_slices(variant, fold=None):
    """The slice files of the patients whose roles the variant learns from (ct2mr.training.roles),
    in fold ``fold``'s job under cross-validation (the roles the job itself gives them:
    ct2mr.training.folds.fold_roles)."""
    roles = variant_roles(variant, config["training"]["unpaired_includes_paired"])
    in_fold = fold_roles(FOLD_OF, fold) if fold is not None else {}
    return expand(
        "results/slices/{patient}.npz",
        patient=[p for p in TRAIN if in_fold.get(p, PATIENTS[p].role) in roles],
    )


def train_list(wildcards):
    """The slice list of a training job (one per variant, and per fold under cross-validation)."""
    return file_list(f"train_{wildcards.variant}" + (f"_fold{wildcards.fold}" if FOLDS else ""))


def folds_input(wildcards):
    """The folds table, an input of every job that needs it under cross-validation (else none)."""
    return [FOLDS_TSV] if FOLDS else []


def folds_input_training(wildcards):
    """The folds table as a training job's input, by content, not time (``ancient``): the split
    reaches a model through its slice list, which is rewritten when the fold's patients change,
    so a rewritten but identical table (the `folds` job rerun for a code change) retrains nothing."""
    return [ancient(FOLDS_TSV)] if FOLDS else []


def folds_flag(wildcards, input):
    """`--folds FILE --fold F` of a training job under cross-validation, else ''."""
    return f"--folds {shlex.quote(str(input.folds))} --fold {wildcards.fold}" if FOLDS else ""


# --- used by lists.smk (file_list) ---
#: every list a job reads (results/lists/{name}.txt, ct2mr.pipeline.file_lists) -> its files, in table order
FILE_LISTS = {
    "registration_qa": lambda: expand("results/preprocessed/{patient}/registration_qa.json", patient=PAIRED_3D),
    "test_slices": lambda: expand("results/slices/{patient}.npz", patient=TEST),
    **(
        {f"train_{v}_fold{f}": functools.partial(training_slices, v, f) for v in VARIANTS for f in FOLD_IDS}
        if FOLDS
        else {f"train_{v}": functools.partial(training_slices, v) for v in VARIANTS}
    ),
    **{f"synth_{v}": functools.partial(synth_slices, v) for v in VARIANTS},
    **{f"volume_{v}": functools.partial(volume_tables, v) for v in VARIANTS},
    "mask_qa_mr": lambda: expand(f"{PRE}/masking_qa_mr.json", patient=TEST_3D),
    **({"val_slices": lambda: expand("results/slices/{patient}.npz", patient=VAL)} if VAL else {}),
}


def validation_slices(wildcards):
    """The list of the paired_val patients' slice files (scored during training, never trained on), if any."""
    return [file_list("val_slices")] if VAL else []


def validation_flag(wildcards, input):
    return f"--val-slices @{shlex.quote(str(input.val))}" if input.val else ""


#: CPU threads of a training job: the preset's num_threads (the CPU presets use 1, so
#: two variants train side by side on 2 cores), else 4 to feed a GPU
TRAIN_THREADS = TRAINING_SETTINGS.get("num_threads") or 4


def untracked(value):
    """A param that Snakemake does not record, so a change of it reruns nothing: for
    choices that do not change results (a device, threads, log cadence).

    Snakemake records only params that are not derived from `input`/`output`
    (persistence: derived ones are left out); this one is a function of `input`.
    A callable ``value`` is called with the job's wildcards.
    """
    if callable(value):
        return lambda wildcards, input: value(wildcards)
    return lambda wildcards, input: value


def training_run_settings(wildcards):
    """The resolved training settings (preset + overrides + device) of the job's seed, as
    JSON: what `train` gets, as an untracked param (device, threads, log cadence do not retrain)."""
    return json.dumps({**TRAINING_SETTINGS, "seed": int(wildcards.seed)}, sort_keys=True)


def training_result_settings(wildcards):
    """The settings that change the weights (the settings hash's fields) of the job's seed:
    the `train` rule's tracked param, so that a change of any of them retrains."""
    return json.dumps(
        {**{k: v for k, v in TRAINING_SETTINGS.items() if k not in NON_RESULT_FIELDS}, "seed": int(wildcards.seed)},
        sort_keys=True,
    )
