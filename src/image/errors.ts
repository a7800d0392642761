// Errors of the image commands. Each message is meant to be shown to the user as it is: it names
// the image, layer or container concerned and what was expected.

/** The image is malformed, unsupported, or does not match its digests. Nothing was changed. */
export class ImageError extends Error {
  override name = 'ImageError';
}

/** A store or container operation that cannot be done (unknown name, name taken, ...). */
export class StoreError extends Error {
  override name = 'StoreError';
}
