// Running ONNX models in onnxruntime-node: sessions with bake's errors, input feeds (generated, real
// samples, text through the model's own tokenizer), used by the quantizers (calibration) and the verifiers.
export { DEFAULT_EVAL_TEXTS } from './eval-texts.js';
export { dataFeeds, dataInput, fromSpec, generateInputs, modelInputs, prng, type Feeds, type GenerateOptions, type InputSpec } from './inputs.js';
export { openSession, peakRss, runSession } from './session.js';
export { loadTokenizer, textFeeds } from './text.js';
export { l2normalize, sigmoid, TextModel, TooManyTokensError, type Batch, type SessionOptions } from './encoder.js';
