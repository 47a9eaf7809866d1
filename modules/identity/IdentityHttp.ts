/**
 * Identity's public REST routes, implemented by calling its client: they work wherever it runs.
 * The caller the gateway authenticated travels with each call; identity enforces ownership and
 * roles itself as well as through the routes' middleware.
 */
import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Effect, Schema } from "effect"
import * as Auth from "../../runtime/gateway/Auth.ts"
import * as Gateway from "../../runtime/gateway/Gateway.ts"
import * as Problem from "../../runtime/gateway/Problem.ts"
import {
  AccessToken,
  ApiKey,
  ApiKeyId,
  ApiKeyNotFound,
  Credentials,
  EmailTaken,
  IdentityClient,
  InvalidCredentials,
  IssuedApiKey,
  JsonWebKeySet,
  Me,
  NewApiKey,
  Registration,
  SigningKey,
  User,
  UserId,
  UserNotFound
} from "./IdentityApi.ts"

export class IdentityHttp extends HttpApiGroup.make("identity")
  .add(
    HttpApiEndpoint.post("register", "/v1/auth/register")
      .annotate(Auth.CredentialExchange, true)
      .setPayload(Problem.payload(Registration))
      .addSuccess(User, { status: 201 })
      .addError(Problem.schema(EmailTaken))
      .annotate(OpenApi.Summary, "Register a customer account")
  )
  .add(
    HttpApiEndpoint.post("login", "/v1/auth/login")
      .annotate(Auth.CredentialExchange, true)
      .setPayload(Problem.payload(Credentials))
      .addSuccess(AccessToken)
      .addError(Problem.schema(InvalidCredentials))
      .annotate(OpenApi.Summary, "Exchange an e-mail address and password for an access token")
  )
  .add(
    HttpApiEndpoint.get("me", "/v1/me")
      .addSuccess(Me)
      .addError(Problem.schema(UserNotFound))
      .middleware(Auth.Authenticated)
      .annotate(OpenApi.Summary, "The caller: the user (kind \"user\") or the API key (kind \"api-key\")")
  )
  .add(
    HttpApiEndpoint.get("getUser")`/v1/users/${HttpApiSchema.param("id", UserId)}`
      .addSuccess(User)
      .addError(Problem.schema(UserNotFound))
      .middleware(Auth.Authenticated)
      .annotate(OpenApi.Summary, "A user: yourself, or anyone for an admin")
  )
  .add(
    HttpApiEndpoint.post("createApiKey", "/v1/api-keys")
      .setPayload(Problem.payload(NewApiKey))
      .addSuccess(IssuedApiKey, { status: 201 })
      .middleware(Auth.AdminOnly)
      .annotate(OpenApi.Summary, "Issue an API key for a machine client; the key is shown only in this answer")
  )
  .add(
    HttpApiEndpoint.get("listApiKeys", "/v1/api-keys")
      .addSuccess(Schema.Array(ApiKey))
      .middleware(Auth.AdminOnly)
      .annotate(OpenApi.Summary, "Every API key, newest first (never the keys themselves)")
  )
  .add(
    HttpApiEndpoint.del("revokeApiKey")`/v1/api-keys/${HttpApiSchema.param("id", ApiKeyId)}`
      .addSuccess(ApiKey)
      .addError(Problem.schema(ApiKeyNotFound))
      .middleware(Auth.AdminOnly)
      .annotate(OpenApi.Summary, "Revoke an API key: it stops working at once")
  )
  .add(
    HttpApiEndpoint.post("rotateSigningKey", "/v1/auth/signing-keys")
      .addSuccess(SigningKey, { status: 201 })
      .middleware(Auth.AdminOnly)
      .annotate(
        OpenApi.Summary,
        "Start signing access tokens with a new key; tokens signed with the old one stay valid until they expire"
      )
  )
  .add(
    HttpApiEndpoint.get("jwks", "/.well-known/jwks.json")
      .addSuccess(JsonWebKeySet)
      .annotate(OpenApi.Summary, "The public keys that verify access tokens (JWKS, RFC 7517)")
  )
{}

export const IdentityHttpLive = HttpApiBuilder.group(
  HttpApi.make(Gateway.API_ID).add(IdentityHttp),
  "identity",
  (handlers) =>
    Effect.gen(function*() {
      const identity = yield* IdentityClient
      return handlers
        .handle("register", ({ payload }) => Gateway.orUnavailable(identity.register(payload)))
        .handle("login", ({ payload }) => Gateway.orUnavailable(identity.login(payload)))
        .handle("me", () => Gateway.orUnavailable(identity.me()))
        .handle("getUser", ({ path }) => Gateway.orUnavailable(identity.getUser({ id: path.id })))
        .handle("createApiKey", ({ payload }) => Gateway.orUnavailable(identity.createApiKey(payload)))
        .handle("listApiKeys", () => Gateway.orUnavailable(identity.listApiKeys()))
        .handle("revokeApiKey", ({ path }) => Gateway.orUnavailable(identity.revokeApiKey({ id: path.id })))
        .handle("rotateSigningKey", () => Gateway.orUnavailable(identity.rotateSigningKey()))
        .handle("jwks", () => Gateway.orUnavailable(identity.jwks()))
    })
)
