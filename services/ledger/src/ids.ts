export { isUuid, isUuidV7, uuidv7 } from "../../kit/src/index.js";
