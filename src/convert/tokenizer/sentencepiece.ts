// Reads a SentencePiece tokenizer.model (a ModelProto protobuf) with protobufjs's wire reader: only the
// fields GGUF needs (pieces with score and type, the model type and the special ids of TrainerSpec).
import protobuf from 'protobufjs';
import { InputError } from '../../util/errors.js';

export const SPM_PIECE_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface SentencePieceModel {
  pieces: { piece: string; score: number; type: number }[];
  /** TrainerSpec.model_type: 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR. */
  modelType: number;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  addDummyPrefix: boolean;
}

function readPiece(r: protobuf.Reader, end: number): { piece: string; score: number; type: number } {
  let piece = '';
  let score = 0;
  let type: number = SPM_PIECE_TYPE.NORMAL;
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1: piece = r.string(); break;
      case 2: score = r.float(); break;
      case 3: type = r.int32(); break;
      default: r.skipType(tag & 7);
    }
  }
  return { piece, score, type };
}

export function parseSentencePieceModel(bytes: Uint8Array, file: string): SentencePieceModel {
  const model: SentencePieceModel = { pieces: [], modelType: 1, unkId: 0, bosId: 1, eosId: 2, padId: -1, addDummyPrefix: true };
  try {
    const r = protobuf.Reader.create(bytes);
    while (r.pos < r.len) {
      const tag = r.uint32();
      const field = tag >>> 3;
      if (field === 1 && (tag & 7) === 2) {
        const len = r.uint32();
        model.pieces.push(readPiece(r, r.pos + len));
      } else if (field === 2 && (tag & 7) === 2) {
        const end = r.uint32() + r.pos;
        while (r.pos < end) {
          const t = r.uint32();
          switch (t >>> 3) {
            case 3: model.modelType = r.int32(); break;
            case 40: model.unkId = r.int32(); break;
            case 41: model.bosId = r.int32(); break;
            case 42: model.eosId = r.int32(); break;
            case 43: model.padId = r.int32(); break;
            default: r.skipType(t & 7);
          }
        }
      } else if (field === 3 && (tag & 7) === 2) {
        const end = r.uint32() + r.pos;
        while (r.pos < end) {
          const t = r.uint32();
          if (t >>> 3 === 3) model.addDummyPrefix = r.bool();
          else r.skipType(t & 7);
        }
      } else {
        r.skipType(tag & 7);
      }
    }
  } catch (err) {
    throw new InputError(`${file}: not a valid SentencePiece model (${(err as Error).message})`, {
      file, expected: 'a SentencePiece ModelProto (tokenizer.model)', cause: err,
    });
  }
  if (model.pieces.length === 0) {
    throw new InputError(`${file}: SentencePiece model has no pieces`, { file, expected: 'a SentencePiece ModelProto (tokenizer.model)' });
  }
  return model;
}
