// A branch is one directory of the stack. Index 0 is the top-most: the upper when there is one,
// otherwise the first lowerdir. Only Branch.real() turns a VPath into a host path.
import type { RealPath, VPath } from './path.js';

export class Branch {
  constructor(
    readonly index: number,
    readonly root: RealPath,
    readonly writable: boolean,
  ) {}

  real(p: VPath): RealPath {
    return (p === '/' ? this.root : this.root + p) as RealPath;
  }

  toString(): string {
    return `${this.writable ? 'upper' : 'lower'}[${this.index}]:${this.root}`;
  }
}

/** The ordered, immutable set of branches of one mount. */
export class BranchSet {
  readonly all: readonly Branch[];
  readonly upper: Branch | undefined;

  constructor(lowers: readonly RealPath[], upper?: RealPath) {
    const all: Branch[] = [];
    if (upper !== undefined) all.push(new Branch(0, upper, true));
    for (const root of lowers) all.push(new Branch(all.length, root, false));
    this.all = all;
    this.upper = upper === undefined ? undefined : all[0];
  }

  get lowers(): readonly Branch[] {
    return this.upper ? this.all.slice(1) : this.all;
  }
}
