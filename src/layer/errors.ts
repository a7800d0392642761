// The one error type of layer work (diff, commit, apply). Its message names the tar entry or the
// path, so the CLI can print it as it is. `kind` tells a refused hostile entry ('unsafe') from a
// malformed layer ('invalid'), a refused device node ('device') and what layerfs cannot do
// ('unsupported').
export type LayerErrorKind = 'unsafe' | 'invalid' | 'device' | 'unsupported';

export class LayerError extends Error {
  constructor(
    readonly kind: LayerErrorKind,
    readonly entry: string | undefined,
    reason: string,
  ) {
    super(entry === undefined ? reason : `layer entry ${JSON.stringify(entry)}: ${reason}`);
    this.name = 'LayerError';
  }
}
