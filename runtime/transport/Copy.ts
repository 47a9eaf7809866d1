/**
 * What an in-process call hands across a module border: a value checked against the contract's
 * Schema that the other side cannot change under you. Remotely the wire gives that for free
 * (the callee decodes its own value); in process it is made here, once per value, as cheaply as
 * the value allows:
 *
 * - a value of a schema that transforms nothing is decoded: decoding checks it and builds fresh
 *   objects and arrays;
 * - an instance of a Schema.Class whose fields all hold immutable values (strings, numbers,
 *   literals, DateTimes...: see `immutable`) is an immutable value itself: its fields are
 *   readonly, and Effect caches its hash on it, so it is never changed after it is made. Its
 *   fields are checked and the instance is handed over as it is (where `share` is on), as
 *   Orleans passes its immutable types by reference between grains. That is the common result
 *   (a product, a user) and it saves its rebuilding, the larger part of a call's cost in process;
 * - an instance of any other Schema.Class gets its fields copied (by these same rules) into a
 *   new instance;
 * - anything else is encoded to its wire form and decoded back, as it would be remotely.
 *
 * Only Schema's public API is read: the AST's public node types (`SchemaAST.typeAST`,
 * `isTypeLiteral`, `PropertySignature`), a Class's static `fields` and its constructor's
 * `disableValidation` argument, and ParseResult's decoders and validators.
 *
 * Written by hand because Schema offers a decoder and an encoder but no copy: encoding then
 * decoding builds every value twice, and decoding a class instance rebuilds it through three
 * nested parsers. On this machine: the bench's five-field class took 3.5 µs to decode, more than
 * the call it is part of; catalog's Product (a DateTimeUtc among its fields) 12.6 µs to encode and
 * decode. Checking and handing them over takes 0.3 µs and 1.8 µs.
 */
import { Either, ParseResult, Schema, SchemaAST } from "effect"

type AnySchema = Schema.Schema<any, any, never>

/** A copy of a value, checked against its schema; or why the value does not fit it. */
export type Copy = (value: unknown) => Either.Either<unknown, ParseResult.ParseIssue>

/**
 * Whether `ast` transforms nothing anywhere, so that its Encoded side is its Type side: read from
 * the nodes themselves, not from whether `SchemaAST.encodedAST` happens to hand back the same
 * object (how it shares unchanged nodes is its own affair). A recursive schema (`Suspend`) counts
 * as transformed: the answer may only err towards the full round trip, which is always right.
 */
export const untransformed = (ast: SchemaAST.AST): boolean => {
  switch (ast._tag) {
    case "Transformation":
    case "Suspend":
      return false
    case "Refinement":
      return untransformed(ast.from)
    case "Declaration":
      return ast.typeParameters.every(untransformed)
    case "Union":
      return ast.types.every(untransformed)
    case "TupleType":
      return ast.elements.every((element) => untransformed(element.type)) && ast.rest.every((rest) => untransformed(rest.type))
    case "TypeLiteral":
      return ast.propertySignatures.every((field) => untransformed(field.type)) &&
        ast.indexSignatures.every((index) => untransformed(index.type))
    default:
      return true
  }
}

/** Declared types whose values Effect never changes once made. */
const immutableDeclarations: ReadonlySet<SchemaAST.AST> = new Set([
  Schema.DateTimeUtcFromSelf.ast,
  Schema.DateTimeZonedFromSelf.ast,
  Schema.BigDecimalFromSelf.ast,
  Schema.DurationFromSelf.ast
])

/**
 * Whether every value of the Type side of `ast` is immutable: primitives, literals, and the
 * declarations above. Objects, arrays, Dates and anything opaque (`unknown`, a class, a
 * recursive schema) are not.
 */
export const immutable = (ast: SchemaAST.AST): boolean => {
  switch (ast._tag) {
    case "StringKeyword":
    case "NumberKeyword":
    case "BooleanKeyword":
    case "BigIntKeyword":
    case "SymbolKeyword":
    case "UndefinedKeyword":
    case "VoidKeyword":
    case "NeverKeyword":
    case "Literal":
    case "UniqueSymbol":
    case "Enums":
    case "TemplateLiteral":
      return true
    case "Refinement":
      return immutable(ast.from)
    case "Union":
      return ast.types.every(immutable)
    case "Transformation":
      return immutable(SchemaAST.typeAST(ast))
    case "Declaration":
      return immutableDeclarations.has(ast)
    default:
      return false
  }
}

/**
 * Whether a struct's `make` would fill in a field: one of `fields` has a constructor default
 * (`Schema.optionalWith(..., { default })`, `withConstructorDefault`). Read as `make` reads it.
 */
export const hasConstructorDefaults = (fields: Schema.Struct.Fields) =>
  Object.values(fields).some((field) =>
    Schema.isPropertySignature(field) &&
    (field.ast._tag === "PropertySignatureDeclaration" ? field.ast.defaultValue : field.ast.to.defaultValue) !==
      undefined
  )

/** The property signatures of a struct's Type side (none for a schema that is not a struct). */
const propertySignatures = (ast: SchemaAST.AST): ReadonlyArray<SchemaAST.PropertySignature> => {
  const type = SchemaAST.typeAST(ast)
  return SchemaAST.isTypeLiteral(type) ? type.propertySignatures : []
}

/**
 * A check of an immutable class's fields, field by field with Effect's own `is`: half the time
 * of validating them as a struct, which builds a record of them only to drop it.
 */
const fieldsCheck = (fields: AnySchema) => {
  const checks = propertySignatures(fields.ast).map((field) => ({
    name: field.name,
    optional: field.isOptional,
    is: ParseResult.is(Schema.make(field.type))
  }))
  return (value: any) => {
    for (const { is, name, optional } of checks) {
      if (!(optional && !(name in value)) && !is(value[name])) return false
    }
    return true
  }
}

type SchemaClass = (new(fields: unknown, disableValidation: true) => unknown) & { readonly fields: Schema.Struct.Fields }

/** A Schema.Class (or TaggedClass, TaggedError...): a transformation from its fields to instances. */
const isClass = (schema: AnySchema): schema is AnySchema & SchemaClass =>
  schema.ast._tag === "Transformation" && typeof schema === "function" && "fields" in schema

/**
 * The copier of `schema`'s values (see above). `share` lets immutable class instances through
 * uncopied: on for payloads and results, off for errors (the callee's `Effect.fail` wraps its
 * error in a proxy that carries the callee's span, which a shared error would take along).
 */
export const copier = (schema: AnySchema, options: { readonly share: boolean }): Copy => {
  const decode = ParseResult.decodeUnknownEither(schema)
  if (untransformed(schema.ast)) return decode
  const encode = ParseResult.encodeUnknownEither(schema)
  const roundTrip: Copy = (value) => Either.flatMap(encode(value), decode)
  if (!isClass(schema)) return roundTrip
  const Class = schema
  // The class's own fields: they need no service, as the class needs none (a type-level cast).
  const fields = Schema.Struct(Class.fields) as unknown as AnySchema
  const shared = options.share && propertySignatures(fields.ast).every((field) => immutable(field.type))
  if (shared) {
    const valid = fieldsCheck(fields)
    // Effect's own validation only where the check fails, for the issue it reports.
    const validate = ParseResult.validateEither(fields)
    return (value) =>
      value instanceof Class ? valid(value) ? Either.right(value) : Either.map(validate(value), () => value) : roundTrip(value)
  }
  const copyFields = copier(fields, options)
  return (value) =>
    value instanceof Class ? Either.map(copyFields(value), (copied) => new Class(copied, true)) : roundTrip(value)
}
