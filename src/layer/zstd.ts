// zstd decompression as a Node stream, for OCI layers stored `+zstd`. Node 20's zlib has none
// (it came in Node 22.15 and 23.8); fzstd decodes in plain JavaScript, streaming, frame after
// frame, with memory bounded by the frames' windows rather than by the layer's size.
import { Transform } from 'node:stream';
import { Decompress } from 'fzstd';

/** A Transform from zstd data (one or more frames) to the bytes it holds. */
export function createZstdDecompress(): Transform {
  let out: Buffer[] = [];
  // fzstd may hand out views of its window, which later data overwrites: copied at once.
  const decoder = new Decompress((data) => {
    out.push(Buffer.from(data));
  });
  const step = (t: Transform, chunk: Uint8Array, final: boolean): Error | undefined => {
    try {
      decoder.push(chunk, final);
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
    for (const b of out) t.push(b);
    out = [];
    return undefined;
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      done(step(this, chunk, false));
    },
    flush(done) {
      // The last frame must be whole: a cut stream is an error, not a shorter layer.
      done(step(this, new Uint8Array(0), true));
    },
  });
}
