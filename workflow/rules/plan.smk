# GPU plan: `snakemake plan` prints, for every unlearning run of the config, the memory per GPU
# by component and the runtime (bilevel_unlearning.plan), before anything is submitted. No
# outputs (it runs every time it is asked for), no network: models are known by their hub ids,
# forget sets are counted where the data are already there, else taken from published sizes.
# The plan is bilevel_unlearning.plan.config_plan; common.smk reads each rule's gpus resource.


rule plan:
    log:
        f"{RESULTS}/logs/plan.log",
    localrule: True
    run:
        Path(log[0]).write_text(print_plan())
