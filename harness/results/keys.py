"""Every MLPerf log key the project writes or reads, named once.

Why: the same key spelled as a string literal in the writer, the parser and the compliance code
can drift apart silently; a misspelt name here fails at import. Keys that today's
`mlperf_logging.mllog.constants` defines come from there; the NCF keys of the v0.5 era (which it
no longer carries), our eval metric NDCG, and the harness's provenance keys are defined below.
"""
from __future__ import annotations

from mlperf_logging.mllog import constants as _mllog

# -- keys of today's MLPerf logging (mllog.constants) --------------------------------------
SUBMISSION_BENCHMARK = _mllog.SUBMISSION_BENCHMARK
SUBMISSION_ORG = _mllog.SUBMISSION_ORG
SUBMISSION_DIVISION = _mllog.SUBMISSION_DIVISION
SUBMISSION_STATUS = _mllog.SUBMISSION_STATUS
SUBMISSION_PLATFORM = _mllog.SUBMISSION_PLATFORM
CACHE_CLEAR = _mllog.CACHE_CLEAR
INIT_START = _mllog.INIT_START
INIT_STOP = _mllog.INIT_STOP
RUN_START = _mllog.RUN_START
RUN_STOP = _mllog.RUN_STOP
BLOCK_START = _mllog.BLOCK_START
BLOCK_STOP = _mllog.BLOCK_STOP
EPOCH_START = _mllog.EPOCH_START
EPOCH_STOP = _mllog.EPOCH_STOP
EVAL_START = _mllog.EVAL_START
EVAL_STOP = _mllog.EVAL_STOP
EVAL_ACCURACY = _mllog.EVAL_ACCURACY
SEED = _mllog.SEED
GLOBAL_BATCH_SIZE = _mllog.GLOBAL_BATCH_SIZE
OPT_NAME = _mllog.OPT_NAME
OPT_BASE_LR = _mllog.OPT_BASE_LR
OPT_ADAM_BETA_1 = _mllog.OPT_ADAM_BETA_1
OPT_ADAM_BETA_2 = _mllog.OPT_ADAM_BETA_2
OPT_ADAM_EPSILON = _mllog.OPT_ADAM_EPSILON
TRAIN_SAMPLES = _mllog.TRAIN_SAMPLES
EVAL_SAMPLES = _mllog.EVAL_SAMPLES
EPOCH_COUNT = _mllog.EPOCH_COUNT
FIRST_EPOCH_NUM = _mllog.FIRST_EPOCH_NUM
# metadata keys and values
EPOCH_NUM = _mllog.EPOCH_NUM
STATUS = _mllog.STATUS
SUCCESS = _mllog.SUCCESS
ABORTED = _mllog.ABORTED

# -- NCF hyperparameter keys of the v0.5 era (not in mllog.constants any more) -------------
PREPROC_HP_MIN_RATINGS = "preproc_hp_min_ratings"
PREPROC_HP_NUM_EVAL = "preproc_hp_num_eval"
PREPROC_HP_SAMPLE_EVAL_REPLACEMENT = "preproc_hp_sample_eval_replacement"
INPUT_HP_NUM_NEG = "input_hp_num_neg"
INPUT_HP_SAMPLE_TRAIN_REPLACEMENT = "input_hp_sample_train_replacement"
EVAL_HP_NUM_USERS = "eval_hp_num_users"
EVAL_HP_NUM_NEG = "eval_hp_num_neg"
EVAL_HP_MATCH_MLPERF = "eval_hp_match_mlperf"
MODEL_HP_MF_DIM = "model_hp_mf_dim"
MODEL_HP_MLP_LAYER_SIZES = "model_hp_mlp_layer_sizes"
MODEL_HP_LOSS_FN = "model_hp_loss_fn"
EVAL_TARGET = "eval_target"

# -- other keys of the published v0.5 logs (read, never written) ---------------------------
V05_RUN_SET_RANDOM_SEED = "run_set_random_seed"
V05_RUN_CLEAR_CACHES = "run_clear_caches"
V05_RUN_FINAL = "run_final"
V05_TRAIN_LOOP = "train_loop"
V05_TRAIN_EPOCH = "train_epoch"
V05_EVAL_SIZE = "eval_size"
V05_OPT_LEARNING_RATE = "opt_learning_rate"
V05_INPUT_BATCH_SIZE = "input_batch_size"
V05_INPUT_SIZE = "input_size"
V05_INPUT_STEP_TRAIN_NEG_GEN = "input_step_train_neg_gen"
V05_INPUT_STEP_EVAL_NEG_GEN = "input_step_eval_neg_gen"
V05_HYPERPARAMETER_PREFIXES = ("preproc_hp_", "input_hp_", "eval_hp_", "model_hp_", "opt_")

# -- this harness's own keys: the metric beside HR@10 and the run's provenance --------------
ABORT_REASON = "abort_reason"          # run_stop metadata beside STATUS when a run is aborted
EVAL_NDCG = "eval_ndcg"
EVAL_SET_SHA256 = "eval_set_sha256"
DATASET_NAME = "dataset_name"
DATASET_VERIFICATION = "dataset_verification"
DATASET_SHA256 = "dataset_sha256"
DATASET_PREPARATION_VERSION = "dataset_preparation_version"
DATASET_HELDOUT_SHA256 = "dataset_heldout_sha256"
DATASET_TRAIN_POSITIVES = "dataset_train_positives"
HARNESS_VERSION = "harness_version"
HARNESS_GIT_COMMIT = "harness_git_commit"
FRAMEWORK_VERSION = "framework_version"
SYSTEM_NAME = "system_name"
NUM_REPLICAS = "num_replicas"
NUM_HOSTS = "num_hosts"
PRECISION = "precision"
XLA = "xla"
