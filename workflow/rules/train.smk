# Training: MR-GAN (`mrgan`) and its two baselines (`paired` = pix2pix,
# `unpaired` = CycleGAN), same architecture and settings, one job per variant.
# Settings come from the preset in training.preset plus training.overrides;
# a changed setting retrains (params trigger) and everything downstream follows.
# Checkpoints (results/models/{variant}/checkpoint.pt) are not declared outputs,
# so an interrupted job resumes from its last checkpoint when started again; one of
# other settings or data is moved to superseded/ (ct2mr.train.checkpoint_to_resume).
# `settings` (the fields that change the weights) is the tracked param; the full
# settings (with device, threads, log cadence) reach the command untracked.


rule train:
    input:
        training_slices,
    output:
        weights="results/models/{variant}/syn_mr.pt",
        model="results/models/{variant}/model.json",
        losses=report(
            "results/models/{variant}/losses.tsv",
            caption="../report/losses_tsv.rst",
            category="3. Training",
            subcategory="Loss tables",
            labels={"variant": "{variant}", "file": "losses.tsv"},
        ),
        curve=report(
            "results/models/{variant}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="3. Training",
            subcategory="Loss curves",
            labels={"variant": "{variant}", "figure": "loss curve"},
        ),
    params:
        settings=TRAINING_RESULT_SETTINGS,
        run_settings=untracked(TRAINING_SETTINGS_JSON),
        out_dir=lambda w, output: os.path.dirname(output.weights),
    log:
        "results/logs/train/{variant}.log",
    benchmark:
        "results/benchmarks/train/{variant}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=8000,
        gpu=config["training"]["gpus"],
        runtime=24 * 60,
    shell:
        "python -m ct2mr --threads {threads} train --variant {wildcards.variant} --out-dir {params.out_dir}"
        " --settings {params.run_settings:q} --slices {input} > {log} 2>&1"
