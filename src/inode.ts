// Inode numbers shown through the mount (FUSE's use_ino): layerfs's own, derived from the serving
// entry's device and inode number, so they are the same on every stat, in readdir's d_ino, for
// every name of a hard link, and across remounts of the same branches. Devices are numbered in
// branch order at mount (the upper's first), so with all branches on one filesystem the numbers
// are the real ones, as the kernel's overlayfs shows them. Another device's numbers are moved
// into their own range of 2^44; past what fits exactly in a double they are hashed instead.

const RANGE = 2 ** 44;
const RANGES = 2 ** 53 / RANGE; // 512 devices with exact numbers

export class InodeNumbers {
  readonly #devices = new Map<number, number>();

  constructor(branchDevices: readonly number[]) {
    for (const d of branchDevices) this.#index(d);
  }

  #index(dev: number): number {
    let i = this.#devices.get(dev);
    if (i === undefined) {
      i = this.#devices.size;
      this.#devices.set(dev, i);
    }
    return i;
  }

  of(dev: number, ino: number): number {
    const i = this.#index(dev);
    if (i === 0 && ino < 2 ** 53) return ino;
    if (i < RANGES && ino < RANGE) return i * RANGE + ino;
    return mix(dev, ino);
  }
}

/** A 52-bit mix of (dev, ino) for numbers that do not fit a range: collisions are unlikely, not impossible. */
function mix(dev: number, ino: number): number {
  let h1 = 0x811c9dc5 ^ (dev >>> 0);
  let h2 = 0x01000193 ^ (ino >>> 0);
  const hi = Math.floor(ino / 2 ** 32) >>> 0;
  h1 = Math.imul(h1 ^ hi, 0x85ebca6b);
  h2 = Math.imul(h2 ^ (h1 >>> 13), 0xc2b2ae35);
  h1 = Math.imul(h1 ^ (h2 >>> 16), 0x27d4eb2f);
  return ((h1 >>> 0) & 0xfffff) * 2 ** 32 + (h2 >>> 0) + 2 ** 52;
}
