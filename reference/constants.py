"""Closed-division constants of the MLPerf NCF benchmark: one source for every number.

Logs, checks and reports read these; nothing else in the project spells 999 or 0.635.
"""

NUM_EVAL_NEGATIVES = 999          # eval negatives per user, drawn with replacement
EVAL_ROW = NUM_EVAL_NEGATIVES + 1  # candidates per eval row
TRUE_ITEM_COLUMN = NUM_EVAL_NEGATIVES  # the true item is the last column of a row
NUM_NEG = 4                        # training negatives per positive, drawn with replacement
TOP_K = 10                         # HR@10 / NDCG@10
MIN_RATINGS = 20                   # users with fewer ratings are dropped
MF_DIM = 64                        # closed-division GMF width
MLP_LAYERS = (256, 256, 128, 64)   # closed-division MLP sizes (layers[0] = concat width)
LOSS_FN = "binary_cross_entropy"   # sigmoid cross-entropy on the logit
MLPERF_TARGET_HR = 0.635           # ml-20m quality target (MLPerf v0.5/v0.6)
MAX_INIT_SECONDS = 20 * 60         # init_start..init_stop must stay under 20 minutes
CLOSED_OPTIMIZERS = ("adam", "lazy_adam")
BENCHMARK = "ncf"
