/** The little of autocannon's programmatic API the bench uses (the package ships no types). */
declare module "autocannon" {
  interface Options {
    readonly url: string
    readonly connections?: number
    readonly pipelining?: number
    /** Seconds. */
    readonly duration?: number
    readonly method?: string
    readonly headers?: Record<string, string>
    readonly body?: string
  }
  interface Result {
    readonly requests: { readonly total: number; readonly average: number }
    /** Seconds. */
    readonly duration: number
    readonly errors: number
    readonly non2xx: number
  }
  function autocannon(options: Options): Promise<Result>
  export default autocannon
}
