"""The keys of the batches `xclip_jax.data.pipeline` makes, written down once; the pipeline builds its batches
with these names and every reader (trainer, train step, eval step, planner) takes them from here.

Training batch (`pipeline.make_train_iterator`), per process, b = data.batch_size / processes:
  VIDEO  uint8 (b, T, H, W, 3)   the augmented clips
  LABEL  int32 (b,)              class ids
  INDEX  int32 (b,)              the videos' positions in their source (logs; not sent to the device)
  COLOR  float32 (b, T, C)       only with data.augment.color_on_device: the colour draws the train step
                                 applies (`device_color.apply`; C = device_color.COLUMNS)
Evaluation batch (`pipeline.make_eval_iterator`), V = crops x clips views per video (`data.views`):
  VIDEO  uint8 (b, V, T, H, W, 3)
  LABEL, INDEX int32 (b,); VALID bool (b,) (False: a padding row); DECODE_OK bool (b,) (False: the video
  could not be decoded, a valid row that counts as an error)
"""

VIDEO = "video"
LABEL = "label"
INDEX = "index"
COLOR = "color"
VALID = "valid"
DECODE_OK = "decode_ok"

TRAIN_DEVICE_KEYS = (VIDEO, LABEL, COLOR)  # what of a training batch goes to the device (COLOR when present)
EVAL_ROW_FIELDS = {LABEL: "int32", INDEX: "int32", VALID: "bool", DECODE_OK: "bool"}  # per-video rows, by dtype
