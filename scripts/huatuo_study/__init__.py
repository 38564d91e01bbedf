"""The pipeline's library: what the stage programs in scripts/ share, one subpackage per concern
(data, model, answering, judging, statistics, paper) over a few modules every stage uses (files and
errors, records and their schemas, the run's plan from the config, the chat API). Stages import it
with scripts/ on sys.path; no module here imports a stage."""
