/**
 * How many signing keys identity has made in this process. Identity advances it once a new key
 * is stored; the gateway's key cache in the same process reads it, and when a token names a key
 * it does not know and this has moved since its last fetch, fetches the key set at once: in one
 * process a rotation is seen by the very next token. Across processes nothing is shared, and the
 * cache's bounded refetch does the work (IdentityAuth.ts).
 */
let made = 0

export const KeyGeneration = {
  current: (): number => made,
  advance: (): void => {
    made += 1
  }
} as const
