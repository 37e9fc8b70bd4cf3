# Training: MR-GAN (`mrgan`) and its baselines (`paired` = pix2pix, `unpaired` =
# CycleGAN, `regression` = Syn_MR with the voxel-wise L1 alone), same architecture
# and settings, one job per variant and seed (training.seeds):
# results/models/{variant}/seed{seed}/.
# Settings come from the preset in training.preset plus training.overrides, with the
# job's seed; a changed setting retrains (params trigger) and everything downstream
# follows. `settings` (the fields that change the weights) is the tracked param; the
# full settings (with device, threads, log cadence) reach the command untracked.
# The preprocessing the slices were made with (the resample, skull_mask, window and slices
# sections) reaches `train` as a tracked param and is recorded in model.json, where
# `ct2mr predict` reads it; a change of it changes the slices too, so it retrains anyway.
# The paired_val patients' slices (if any) are scored every val_every iterations
# (val_mae, val_mae_head in losses.tsv); they are never trained on.
# Checkpoints (results/models/{variant}/seed{seed}/checkpoint.pt) are not declared
# outputs, so an interrupted job resumes from its last checkpoint when started again;
# one of other settings or data is moved to superseded/ (ct2mr.training.checkpoint.checkpoint_to_resume).
# The slice files a variant learns from reach `train` as one list file
# (results/lists/train_{variant}.txt, rule file_list; ct2mr.pipeline.file_lists), the paired_val
# patients' as another (results/lists/val_slices.txt).
# k-fold cross-validation (evaluation.folds: k >= 2; ct2mr.training.folds): the paired patients
# are split into k seeded folds (rule folds -> results/metrics/folds.tsv), and every variant and
# seed trains one model per fold, results/models/{variant}/fold{fold}/seed{seed}/, on the other
# folds' paired patients plus the unpaired pools (list train_{variant}_fold{fold}); the folds
# table tells the job which patients it must never see.


# The split is made in the workflow's process (localrule): it only writes patient ids. Its
# params are the folds' whole definition, so a changed k, seed or set of paired patients
# rewrites it and retrains every fold; anything else leaves it alone.
rule folds:
    output:
        FOLDS_TSV,
    log:
        "results/logs/train/folds.log",
    benchmark:
        "results/benchmarks/train/folds.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
    params:
        k=FOLDS,
        seed=config["evaluation"]["fold_seed"],
        patients=sorted(FOLD_OF),
    run:
        write_folds(output[0], params.patients, params.k, params.seed, log=log[0])


rule train:
    input:
        train=train_list,
        val=validation_slices,
        folds=folds_input_training,
    output:
        weights=f"{MODEL}/syn_mr.pt",
        model=f"{MODEL}/model.json",
        losses=report(
            f"{MODEL}/losses.tsv",
            caption="../report/losses_tsv.rst",
            category="3. Training",
            subcategory="Loss tables",
            labels={"variant": "{variant}", "seed": "{seed}", "file": "losses.tsv"},
        ),
        curve=report(
            f"{MODEL}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="3. Training",
            subcategory="Loss curves",
            labels={"variant": "{variant}", "seed": "{seed}", "figure": "loss curve"},
        ),
    log:
        f"results/logs/train/{TRAIN_JOB}.log",
    benchmark:
        f"results/benchmarks/train/{TRAIN_JOB}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=8000,
        gpu=config["training"]["gpus"],
        runtime=24 * 60,
    params:
        settings=training_result_settings,
        preprocessing=json.dumps(
            {k: config[k] for k in ("resample", "skull_mask", "window", "slices")},
            sort_keys=True,
        ),
        run_settings=untracked(training_run_settings),
        out_dir=lambda w, output: os.path.dirname(output.weights),
        val=validation_flag,
        folds=folds_flag,
    shell:
        "python -m ct2mr --threads {threads} train --variant {wildcards.variant} --out-dir {params.out_dir:q}"
        " --settings {params.run_settings:q} --preprocessing {params.preprocessing:q} --slices @{input.train:q} {params.val} {params.folds} > {log:q} 2>&1"
