/**
 * Implements the identity contract with its use cases. Each call that acts for someone reads its
 * caller from the call's headers here, and admin-only calls check the role here, whatever the
 * gateway already checked. Building this layer (at process start) creates the configured
 * administrator if there is none.
 */
import { Effect, Layer } from "effect"
import * as Gate from "../../../runtime/db/Gate.ts"
import * as Caller from "../../../runtime/security/Caller.ts"
import { IdentityRpcs } from "../IdentityApi.ts"
import { Identity } from "./Identity.ts"

export const IdentityHandlers = IdentityRpcs.toLayer(
  Effect.gen(function*() {
    const identity = yield* Identity
    // The database may be busy for a moment at start: that is waited out, not a reason to stop.
    yield* Gate.retryWhileUnavailable(identity.bootstrapAdmin())
    return {
      register: (registration) => identity.register(registration),
      login: (credentials) => identity.login(credentials),
      me: (_, { headers }) => Effect.flatMap(Caller.requireCaller(headers), identity.me),
      getUser: ({ id }, { headers }) => Effect.flatMap(Caller.requireCaller(headers), (caller) => identity.getUser(caller, id)),
      createApiKey: (input, { headers }) =>
        Effect.flatMap(Caller.requireAdmin(headers), (admin) => identity.createApiKey(admin, input)),
      listApiKeys: (_, { headers }) => Effect.zipRight(Caller.requireAdmin(headers), identity.listApiKeys()),
      revokeApiKey: ({ id }, { headers }) =>
        Effect.flatMap(Caller.requireAdmin(headers), (admin) => identity.revokeApiKey(admin, id)),
      authenticateApiKey: ({ key }) => identity.authenticateApiKey(key),
      jwks: () => identity.jwks(),
      rotateSigningKey: (_, { headers }) => Effect.flatMap(Caller.requireAdmin(headers), identity.rotateSigningKey)
    }
  })
).pipe(Layer.provide(Identity.Default))
